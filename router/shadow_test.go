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
// one worker, the predictions that find it busy are dropped and counted.
// Its call runs under its own deadline, after the request's context has
// ended.
func TestShadowSlowIsDroppedNotWaitedFor(t *testing.T) {
	sink, plog := &shadowSink{}, &memLog{}
	f := newFixtureOpt(t, `{"arms": ["m@1"], "shadows": [{"arm": "m@3", "share": 1}]}`,
		Options{Seed: 3, Shadows: sink, ShadowLog: plog, ShadowWorkers: 1, Observers: []Observer{NewPredictionLogObserver(plog)}})
	f.scorers["m@3"].mode.Store("slow") // answers only at its 20 ms deadline
	runShadows(t, f.r)
	const n = 50
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: fmt.Sprintf("u%d", i)})
		took := time.Since(start)
		cancel() // the request is over: its shadow call must not end with it
		if err != nil || resp.Arm != "m@1" || len(resp.Items) == 0 {
			t.Fatalf("%v %+v", err, resp)
		}
		if took > 15*time.Millisecond {
			t.Fatalf("a response took %v behind a shadow that needs 20 ms", took)
		}
	}
	waitFor(t, "every shadowed prediction to be done or dropped", func() bool { d, dr := sink.counts(); return d+dr == n })
	done, dropped := sink.counts()
	if dropped == 0 || done == 0 {
		t.Fatalf("done %d, dropped %d: with one worker and a 20 ms shadow, some of %d back-to-back requests must drop", done, dropped, n)
	}
	for i, p := range sink.done {
		c := p.Calls[0]
		if !errors.Is(c.Err, context.DeadlineExceeded) || c.Latency < 15*time.Millisecond || sink.ctxErr[i] != nil {
			t.Fatalf("shadow call %+v (worker context %v): want its own 20 ms deadline", c, sink.ctxErr[i])
		}
	}
	waitFor(t, "every prediction logged", func() bool { return len(plog.byID()) == n })
	drops := 0
	for _, rs := range plog.byID() {
		if s := rs[0].Shadows; len(s) == 1 && s[0].Dropped {
			drops++
		}
	}
	if drops != dropped {
		t.Fatalf("%d predictions logged as dropped, %d counted", drops, dropped)
	}
}

// Every entry of a batch call is shadowed on its own, as if sent alone.
func TestShadowBatchEntries(t *testing.T) {
	sink := &shadowSink{}
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "shadows": [{"arm": "m@3", "share": 1}]}`,
		Options{Seed: 9, Shadows: sink, ShadowWorkers: 64})
	runShadows(t, f.r)
	reqs := make([]*Request, 20)
	for i := range reqs {
		reqs[i] = &Request{UserID: fmt.Sprint("u", i), K: 3}
	}
	resps, errs, err := f.r.RecommendBatch(context.Background(), "e", reqs)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for i, resp := range resps {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		tok, err := f.signer.Verify(resp.PredictionID)
		if err != nil || !tok.Shadowed {
			t.Fatalf("entry %d: %+v, %v", i, tok, err)
		}
		served[tok.Key()] = true
	}
	waitFor(t, "the shadow calls", func() bool { d, _ := sink.counts(); return d == len(reqs) })
	for _, p := range sink.done {
		if !served[p.Key] || len(p.Served) != 3 || len(p.Calls[0].Items) != 3 {
			t.Fatalf("shadowed prediction %+v", p)
		}
	}
}
