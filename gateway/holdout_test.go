package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/router"
)

// holdoutTally is what a test served and clicked, held out or not.
type holdoutTally struct {
	held, heldClicks, bandit, banditClicks uint64
}

// add counts one served prediction and clicks it (on url) when click is set.
func (h *holdoutTally) add(t *testing.T, url string, rec recResp, click bool) {
	t.Helper()
	if click {
		ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
		var fb fbResp
		if st := call(t, "POST", url+"/v1/feedback", ev, &fb); st != 200 || fb.Accepted != 1 {
			t.Fatalf("feedback: %d %+v", st, fb)
		}
	}
	c := uint64(0)
	if click {
		c = 1
	}
	if rec.Segment == counters.HoldoutSegment {
		if rec.Arm != "mf@1" || rec.Fallback {
			t.Fatalf("held-out prediction %+v, want mf@1", rec)
		}
		h.held, h.heldClicks = h.held+1, h.heldClicks+c
	} else {
		h.bandit, h.banditClicks = h.bandit+1, h.banditClicks+c
	}
}

// driveHoldout serves n recommends of endpoint "hold" spread over reps,
// user user(i); it clicks every second held-out prediction and every
// fourth of the bandit's, on the next replica.
func driveHoldout(t *testing.T, reps []*testApp, n int, user func(i int) string, h *holdoutTally) {
	t.Helper()
	for i := range n {
		var rec recResp
		if st := call(t, "POST", reps[i%len(reps)].url+"/v1/endpoints/hold/recommend", map[string]any{"user_id": user(i)}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		click := i%4 == 0
		if rec.Segment == counters.HoldoutSegment {
			click = i%2 == 0
		}
		h.add(t, reps[(i+1)%len(reps)].url, rec, click)
	}
}

// holdoutExact waits until every replica's report shows exactly what was
// served and clicked: the holdout's counts apart, the arms' rows the
// bandit's alone.
func holdoutExact(t *testing.T, reps []*testApp, h *holdoutTally, within time.Duration) reportResp {
	t.Helper()
	var rep reportResp
	var last string
	waitUntil(t, within, func() bool {
		for _, r := range reps {
			rep = reportResp{}
			call(t, "GET", r.url+"/v1/endpoints/hold/report", nil, &rep)
			ho := rep.Holdout
			var armTrials uint64
			var armClicks float64
			for _, a := range rep.Arms {
				armTrials += a.Trials
				armClicks += a.Successes
			}
			if ho == nil || ho.Trials != h.held || ho.Successes != float64(h.heldClicks) || ho.BanditTrials != h.bandit ||
				ho.BanditSuccesses != float64(h.banditClicks) || armTrials != h.bandit || armClicks != float64(h.banditClicks) {
				last = fmt.Sprintf("%s: holdout %+v, arms %d/%g; want %+v", r.url, ho, armTrials, armClicks, *h)
				return false
			}
		}
		return true
	})
	if t.Failed() {
		t.Log(last)
	}
	return rep
}

// Over HTTP and gRPC with the embedded store: a bad holdout is a
// documented 400; the holdout takes about its share, its predictions and
// clicks are counted apart, and the report's lift is computed from them.
func TestHoldoutEndToEnd(t *testing.T) {
	// A seeded router: the draws, and so the counts, are the same on every run.
	a := startGateway(t, demoConfig(t, ""), Options{Seed: 7}, openedStore{})
	for _, tc := range []struct{ holdout, field string }{
		{`{"arm": "mf@1", "share": 0.6}`, "policy.holdout.share"},
		{`{"arm": "mf@1", "share": 0}`, "policy.holdout.share"},
		{`{"arm": "mf@9", "share": 0.1}`, "policy.holdout.arm"},
	} {
		var e errResp
		if st := call(t, "PUT", a.url+"/v1/endpoints/hold", `{"arms": ["mf@1", "mf@2"], "policy": {"holdout": `+tc.holdout+`}}`, &e); st != 400 ||
			e.Error.Code != "invalid_holdout" || e.Error.Field != tc.field {
			t.Fatalf("holdout %s: %d %+v; want 400 invalid_holdout on %s", tc.holdout, st, e.Error, tc.field)
		}
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/hold", `{"arms": ["mf@1", "mf@2"], "policy": {"holdout": {"arm": "mf@1", "share": 0.3}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	h := &holdoutTally{}
	const n = 400
	driveHoldout(t, []*testApp{a}, n, func(i int) string { return fmt.Sprint("u", i) }, h)
	if h.held < n/10 || h.held > n/2 {
		t.Fatalf("%d of %d held out with a share of 0.3", h.held, n)
	}

	// gRPC: the same endpoint; a held-out answer names the holdout segment.
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	heldOverGRPC := false
	for i := 0; i < 100 && !heldOverGRPC; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "hold", UserId: fmt.Sprint("g", i)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rec := recResp{PredictionID: r.GetPredictionId(), Arm: r.GetArm(), Segment: r.GetSegment(), Fallback: r.GetFallback()}
		for _, it := range r.GetItems() {
			rec.Items = append(rec.Items, backend.Item{ID: it.GetId(), Score: it.GetScore()})
		}
		heldOverGRPC = rec.Segment == counters.HoldoutSegment
		h.add(t, a.url, rec, heldOverGRPC)
	}
	if !heldOverGRPC {
		t.Fatal("no gRPC request of 100 held out with a share of 0.3")
	}

	rep := holdoutExact(t, []*testApp{a}, h, 3*time.Second)
	ho := rep.Holdout
	if ho.Arm != "mf@1" || ho.Share != 0.3 || ho.Lift == nil {
		t.Fatalf("holdout %+v", ho)
	}
	want := (float64(h.banditClicks)/float64(h.bandit))/(float64(h.heldClicks)/float64(h.held)) - 1
	if abs(*ho.Lift-want) > 1e-9 || ho.LiftCI95 == nil || ho.LiftCI95[0] > *ho.Lift || ho.LiftCI95[1] < *ho.Lift {
		t.Fatalf("lift %v in %v, want %v inside its interval", *ho.Lift, ho.LiftCI95, want)
	}
	for _, s := range rep.Segments {
		if s == counters.HoldoutSegment {
			t.Fatalf("segments %v list the holdout", rep.Segments)
		}
	}
	// The holdout is no segment of the bandit's to report on: its figures
	// are the report's holdout.
	for _, path := range []string{"/v1/endpoints/hold/report?segment=holdout", "/ui/endpoints/hold?segment=holdout"} {
		var e errResp
		if st := call(t, "GET", a.url+path, nil, &e); st != 404 || e.Error.Code != "segment_not_found" {
			t.Errorf("%s: %d %+v, want 404 segment_not_found", path, st, e.Error)
		}
	}
	// Off-policy sums and the sample-ratio check hold the bandit's alone.
	if op := rep.Arms[0].OffPolicy; op == nil || uint64(op.N) != h.bandit {
		t.Fatalf("off-policy estimates %+v, want over the bandit's %d predictions", op, h.bandit)
	}
}

// Two replicas on one Redis: with a sticky policy a user is held out on
// either replica or on neither, and both replicas' reports show the same
// holdout counts, served and clicked across them.
func TestHoldoutReplicas(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	reps := replicas(t, rs.URL(), 2)
	if st := call(t, "PUT", reps[0].url+"/v1/endpoints/hold", `{"arms": ["mf@1", "mf@2"],
		"policy": {"sticky": {"ttl": "1h"}, "holdout": {"arm": "mf@1", "share": 0.25}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	waitUntil(t, 2*time.Second, func() bool {
		return call(t, "GET", reps[1].url+"/v1/endpoints/hold", nil, nil) == 200
	})
	h := &holdoutTally{}
	user := func(i int) string { return fmt.Sprint("u", i%60) }
	driveHoldout(t, reps, 240, user, h)
	// Each user's 4 requests went to both replicas: membership by hash.
	for i := range 60 {
		var a, b recResp
		call(t, "POST", reps[0].url+"/v1/endpoints/hold/recommend", map[string]any{"user_id": user(i)}, &a)
		call(t, "POST", reps[1].url+"/v1/endpoints/hold/recommend", map[string]any{"user_id": user(i)}, &b)
		want := router.HoldoutDraw("hold", user(i)) < 0.25
		if (a.Segment == counters.HoldoutSegment) != want || (b.Segment == counters.HoldoutSegment) != want {
			t.Fatalf("%s: held out %v and %v on the two replicas, want %v", user(i), a.Segment, b.Segment, want)
		}
		h.add(t, reps[1].url, a, false)
		h.add(t, reps[0].url, b, false)
	}
	if h.held == 0 || h.bandit == 0 {
		t.Fatalf("tally %+v: want both sides", *h)
	}
	holdoutExact(t, reps, h, 5*time.Second)
}

// The holdout's counts are durable like any segment's: a restart on the
// same data dir reports them as before, and the sticky membership holds.
func TestHoldoutSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := demoConfig(t, "")
	a := startGateway(t, cfg, Options{DataDir: dir}, openedStore{})
	if st := call(t, "PUT", a.url+"/v1/endpoints/hold", `{"arms": ["mf@1", "mf@2"], "policy": {"sticky": {"ttl": "1h"}, "holdout": {"arm": "mf@1", "share": 0.3}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	h := &holdoutTally{}
	user := func(i int) string { return fmt.Sprint("u", i%50) }
	driveHoldout(t, []*testApp{a}, 150, user, h)
	holdoutExact(t, []*testApp{a}, h, 3*time.Second)
	a.stop()

	b := startGateway(t, cfg, Options{DataDir: dir}, openedStore{})
	holdoutExact(t, []*testApp{b}, h, 3*time.Second)
	for i := range 50 {
		var rec recResp
		call(t, "POST", b.url+"/v1/endpoints/hold/recommend", map[string]any{"user_id": user(i)}, &rec)
		if want := router.HoldoutDraw("hold", user(i)) < 0.3; (rec.Segment == counters.HoldoutSegment) != want {
			t.Fatalf("%s after the restart: segment %q, want held out %v", user(i), rec.Segment, want)
		}
	}
}
