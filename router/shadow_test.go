package router

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/shadow"
)

// shadowSink records what the shadow side reports.
type shadowSink struct {
	mu      sync.Mutex
	done    []*shadow.Prediction
	dropped map[string]int
	ctxErr  []error // the worker context's error when each Done came
}

func (s *shadowSink) Done(ctx context.Context, p *shadow.Prediction) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = append(s.done, p)
	s.ctxErr = append(s.ctxErr, ctx.Err())
}

func (s *shadowSink) Dropped(_ string, arms []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped == nil {
		s.dropped = map[string]int{}
	}
	for _, a := range arms {
		s.dropped[a]++
	}
}

func (s *shadowSink) counts() (done, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.dropped {
		dropped += n
	}
	return len(s.done), dropped
}

// byID groups the log's records by prediction id.
func (l *memLog) byID() map[string][]*predlog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]*predlog.Record{}
	for _, r := range l.recs {
		out[r.PredictionID] = append(out[r.PredictionID], r)
	}
	return out
}

// runShadows runs the router's shadow workers for the test's duration.
func runShadows(t *testing.T, r *Router) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.RunShadows(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A shadow scores its share of the requests (a seeded draw), never a
// pinned one, after the response: each shadowed prediction's token says
// so, its shadow list comes next to the served one, and its prediction log
// line (one per prediction, shadowed or not) carries the shadow's answer.
// The shadow arm gets no trial and never serves.
func TestShadowScoresItsShare(t *testing.T) {
	ctx := context.Background()
	sink, plog := &shadowSink{}, &memLog{}
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "shadows": [{"arm": "m@3", "share": 0.3}]}`,
		Options{Seed: 11, Shadows: sink, ShadowLog: plog, ShadowWorkers: 64, Observers: []Observer{NewPredictionLogObserver(plog)}})
	runShadows(t, f.r)
	const n = 2000
	shadowed := map[string][]string{} // prediction id -> served items
	for i := range n {
		req := &Request{Endpoint: "e", UserID: fmt.Sprintf("u%d", i), K: 5}
		if i%10 == 0 {
			req.Pin = "m@1"
		}
		resp, err := f.r.Recommend(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := f.signer.Verify(resp.PredictionID)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Arm == "m@3" {
			t.Fatal("the shadow served")
		}
		if tok.Shadowed {
			if req.Pin != "" {
				t.Fatal("a pinned prediction was shadowed")
			}
			ids := []string{}
			for _, it := range resp.Items {
				ids = append(ids, it.ID)
			}
			shadowed[resp.PredictionID] = ids
		}
		// The workers keep up (64 of them, a fast shadow): nothing drops.
		waitFor(t, "the shadow workers", func() bool { d, dr := sink.counts(); return d+dr == len(shadowed) })
	}
	unpinned := float64(n - n/10)
	if sd := math.Sqrt(0.3 * 0.7 / unpinned); math.Abs(float64(len(shadowed))/unpinned-0.3) > 4*sd {
		t.Fatalf("%d of %v unpinned predictions shadowed, want 30%% ± %.3f", len(shadowed), unpinned, 4*sd)
	}
	if _, dropped := sink.counts(); dropped != 0 {
		t.Fatalf("%d dropped", dropped)
	}
	if got := f.scorers["m@3"].calls.Load(); got != int64(len(shadowed)) {
		t.Fatalf("the shadow was called %d times for %d shadowed predictions", got, len(shadowed))
	}
	if f.trials("m@3", "all") != 0 {
		t.Fatal("the shadow got trials")
	}
	for _, p := range sink.done {
		if len(p.Calls) != 1 || p.Calls[0].Arm != "m@3" || p.Calls[0].Err != nil {
			t.Fatalf("shadow calls %+v", p.Calls)
		}
		if time.Until(p.Expires) < 23*time.Hour || p.Key == "" {
			t.Fatalf("kept until %v under %q", p.Expires, p.Key)
		}
		// The same scorer on the same inputs: the same top 5.
		if len(p.Calls[0].Items) != 5 || !slices.Equal(p.Calls[0].Items, p.Served) {
			t.Fatalf("shadow list %v, served %v", p.Calls[0].Items, p.Served)
		}
	}
	recs := plog.byID()
	if len(recs) != n {
		t.Fatalf("%d predictions logged, want %d", len(recs), n)
	}
	for id, rs := range recs {
		if len(rs) != 1 {
			t.Fatalf("prediction %s logged %d times", id, len(rs))
		}
		served, isShadowed := shadowed[id]
		switch r := rs[0]; {
		case !isShadowed && len(r.Shadows) != 0:
			t.Fatalf("an unshadowed prediction logged shadows %+v", r.Shadows)
		case isShadowed && (len(r.Shadows) != 1 || r.Shadows[0].Arm != "m@3" || !slices.Equal(r.Shadows[0].Items, served) || r.Shadows[0].Error != ""):
			t.Fatalf("a shadowed prediction logged %+v, served %v", r.Shadows, served)
		}
	}
}

// A slow shadow never delays the response, and cannot pile up work: with
// one worker, held by a shadow call that waits until the test lets it go,
// every request is answered at once and those that find the worker busy
// and the queue full are dropped, counted and logged so.
func TestShadowSlowIsDroppedNotWaitedFor(t *testing.T) {
	sink, plog := &shadowSink{}, &memLog{}
	f := newFixtureOpt(t, `{"arms": ["m@1"]}`,
		Options{Seed: 3, Shadows: sink, ShadowLog: plog, ShadowWorkers: 1, Observers: []Observer{NewPredictionLogObserver(plog)}})
	ctx := context.Background()
	gated := gatedShadow(t, f)
	runShadows(t, f.r)
	const n = 10
	for i := range n {
		// Were a response to wait for its shadow, this would hang.
		rctx, cancel := context.WithCancel(ctx)
		resp, err := f.r.Recommend(rctx, &Request{Endpoint: "e", UserID: fmt.Sprintf("u%d", i)})
		cancel() // the request is over: its shadow call must not end with it
		if err != nil || resp.Arm != "m@1" || len(resp.Items) == 0 {
			t.Fatalf("%v %+v", err, resp)
		}
	}
	// One call held by the worker, at most one queued: the rest dropped.
	if _, dropped := sink.counts(); dropped < n-2 {
		t.Fatalf("%d of %d dropped with one busy worker and a queue of one", dropped, n)
	}
	close(gated.gate)
	waitFor(t, "every shadowed prediction to be done or dropped", func() bool { d, dr := sink.counts(); return d+dr == n })
	done, dropped := sink.counts()
	for _, p := range sink.done {
		if p.Calls[0].Err != nil {
			t.Fatalf("a shadow call outlived by its request failed: %v", p.Calls[0].Err)
		}
	}
	waitFor(t, "every prediction logged", func() bool { return len(plog.byID()) == n })
	drops := 0
	for _, rs := range plog.byID() {
		if s := rs[0].Shadows; len(s) == 1 && s[0].Dropped {
			drops++
		}
	}
	if drops != dropped || done+dropped != n {
		t.Fatalf("%d predictions logged as dropped, %d counted, %d done", drops, dropped, done)
	}
}

// A shadow call ends at the shadow version's own deadline.
func TestShadowOwnDeadline(t *testing.T) {
	sink := &shadowSink{}
	f := newFixtureOpt(t, `{"arms": ["m@1"], "shadows": [{"arm": "m@3", "share": 1}]}`, Options{Seed: 3, Shadows: sink})
	f.scorers["m@3"].mode.Store("slow") // answers only at its 20 ms deadline
	runShadows(t, f.r)
	if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shadow call", func() bool { d, _ := sink.counts(); return d == 1 })
	if c := sink.done[0].Calls[0]; !errors.Is(c.Err, context.DeadlineExceeded) || c.Latency < 20*time.Millisecond || sink.ctxErr[0] != nil {
		t.Fatalf("shadow call %+v (worker context %v): want its own 20 ms deadline", c, sink.ctxErr[0])
	}
}

// When the workers stop, the call under way finishes (not cut by the stop,
// nor counted as its error) and the predictions still queued are dropped
// and logged: every shadowed prediction is accounted for once RunShadows
// returns.
func TestShadowStopAccountsForEveryPrediction(t *testing.T) {
	sink, plog := &shadowSink{}, &memLog{}
	f := newFixtureOpt(t, `{"arms": ["m@1"]}`,
		Options{Seed: 4, Shadows: sink, ShadowLog: plog, ShadowWorkers: 1, Observers: []Observer{NewPredictionLogObserver(plog)}})
	gated := gatedShadow(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { f.r.RunShadows(ctx); close(stopped) }()
	const n = 10
	for i := range n {
		if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: fmt.Sprint("u", i)}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			waitFor(t, "the worker to take the first call", func() bool { return gated.calls.Load() == 1 })
		}
	}
	cancel()
	close(gated.gate) // the call under way may finish now: the stop waits for it
	<-stopped
	done, dropped := sink.counts()
	if done+dropped != n || done == 0 {
		t.Fatalf("done %d + dropped %d, want %d with the call under way done", done, dropped, n)
	}
	for _, p := range sink.done {
		if p.Calls[0].Err != nil {
			t.Fatalf("a call under way at the stop failed: %v", p.Calls[0].Err)
		}
	}
	if got := len(plog.byID()); got != n {
		t.Fatalf("%d predictions logged, want %d", got, n)
	}
}

// gatedShadow registers m@4 (a 60 s timeout) as endpoint e's shadow on
// every request, its calls held until its scorer's gate is closed.
func gatedShadow(t *testing.T, f *fixture) *scorer {
	t.Helper()
	ctx := context.Background()
	if _, _, err := f.reg.PutVersion(ctx, "m", "4", []byte(`{"backend": {"type": "test", "timeout_ms": 60000}, "features": {"inputs": {"u": {"from": "user_id", "dtype": "string"}}}}`)); err != nil {
		t.Fatal(err)
	}
	gated := f.scorers["m@4"]
	gated.gate = make(chan struct{})
	gated.mode.Store("gate")
	if _, _, err := f.reg.PutEndpoint(ctx, "e", []byte(`{"arms": ["m@1"], "shadows": [{"arm": "m@4", "share": 1}]}`)); err != nil {
		t.Fatal(err)
	}
	return gated
}
