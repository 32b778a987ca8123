package router

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/registry"
)

// A holdout takes its share of the requests (within four standard errors
// over many seeded draws), whatever their segment; its predictions are
// trials of the holdout arm in the holdout's cell, carry its segment in
// their token, and are kept out of the bandit's posteriors, its aggregate,
// the off-policy sums and the segment count.
func TestHoldoutShare(t *testing.T) {
	ctx := context.Background()
	offp := &offpolicy.Table{}
	ob := &observed{}
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "policy": {"segment_by": ["surface"], "holdout": {"arm": "m@2", "share": 0.2}}}`,
		Options{Seed: 7, Observers: []Observer{NewOffPolicyObserver(offp), ob}})
	const n = 5000
	held := 0
	for i := range n {
		surface := []string{"music", "news"}[i%2]
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: fmt.Sprintf("u%d", i), Context: map[string]string{"surface": surface}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := f.signer.Verify(resp.PredictionID)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Segment == counters.HoldoutSegment {
			held++
			if resp.Arm != "m@2" || resp.Fallback || tok.Segment != counters.HoldoutSegment || tok.Arm != "m@2" {
				t.Fatalf("held-out prediction %+v, token %+v", resp, tok)
			}
		} else if tok.Segment != "surface="+surface {
			t.Fatalf("bandit prediction in %q, token %q", resp.Segment, tok.Segment)
		}
	}
	if sd := math.Sqrt(0.2 * 0.8 / n); math.Abs(float64(held)/n-0.2) > 4*sd {
		t.Fatalf("%d of %d held out, want 20%% ± %.3f", held, n, 4*sd)
	}
	if got := f.trials("m@2", counters.HoldoutSegment); got != uint64(held) {
		t.Errorf("holdout trials %d, want %d", got, held)
	}
	if got := f.trials("m@1", counters.HoldoutSegment); got != 0 {
		t.Errorf("%d holdout trials of m@1, the bandit's only", got)
	}
	var segs, agg uint64
	for _, arm := range []string{"m@1", "m@2"} {
		segs += f.trials(arm, "surface=music") + f.trials(arm, "surface=news")
		agg += f.trials(arm, counters.AggregateSegment)
	}
	if segs != uint64(n-held) || agg != uint64(n-held) {
		t.Errorf("bandit trials: segments %d, aggregate %d; want %d each", segs, agg, n-held)
	}
	if got := f.table.SegmentCount("e"); got != 2 {
		t.Errorf("segment count %d, want 2: the holdout is not a segment", got)
	}
	if got := offp.Query("e", "", false, time.Time{}, time.Time{}).N; got != float64(n-held) {
		t.Errorf("off-policy sums hold %v predictions, want the bandit's %d", got, n-held)
	}
	outs := 0
	for _, o := range ob.outs {
		if o.Holdout {
			outs++
			if o.Segment != counters.HoldoutSegment || !o.Trial {
				t.Fatalf("held-out outcome %+v", o)
			}
		}
	}
	if outs != held {
		t.Errorf("%d held-out outcomes, want %d", outs, held)
	}
}

// With a sticky policy a user's membership is a hash of (endpoint, user):
// the same on another replica or after a restart, and independent of the
// bandit's choices. Its share holds over users.
func TestHoldoutStickyIsPerUser(t *testing.T) {
	ctx := context.Background()
	const body = `{"arms": ["m@1", "m@2"], "policy": {"sticky": {"ttl": "1h"}, "holdout": {"arm": "m@1", "share": 0.3}}}`
	a, b := newFixtureOpt(t, body, Options{Seed: 1}), newFixtureOpt(t, body, Options{Seed: 2})
	const users = 2000
	held := 0
	for i := range users {
		u := fmt.Sprintf("user-%d", i)
		want := HoldoutDraw("e", u) < 0.3
		if want {
			held++
		}
		for round, f := range []*fixture{a, b, a} {
			resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: u})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Segment == counters.HoldoutSegment; got != want {
				t.Fatalf("%s, request %d: held out %v, want %v", u, round, got, want)
			}
		}
	}
	if sd := math.Sqrt(0.3 * 0.7 / users); math.Abs(float64(held)/users-0.3) > 4*sd {
		t.Fatalf("%d of %d users held out, want 30%% ± %.3f", held, users, 4*sd)
	}
	if got := a.trials("m@1", counters.HoldoutSegment); got != uint64(2*held) {
		t.Errorf("holdout trials %d, want %d", got, 2*held)
	}
	// Another endpoint draws its own holdout.
	same := 0
	for i := range users {
		u := fmt.Sprintf("user-%d", i)
		if (HoldoutDraw("e", u) < 0.3) == (HoldoutDraw("f", u) < 0.3) {
			same++
		}
	}
	if same == users {
		t.Error("two endpoints hold out the same users")
	}
}

// A held-out request whose holdout arm fails falls back like any other:
// the fallback's prediction is the bandit's, counted in the request's
// segment. While the holdout arm is paused nobody is held out.
func TestHoldoutArmDown(t *testing.T) {
	ctx := context.Background()
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@1", "policy": {"holdout": {"arm": "m@2", "share": 0.5}}}`, Options{Seed: 3})
	f.scorers["m@2"].mode.Store("fail")
	fellBack := 0
	for i := range 200 {
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: fmt.Sprintf("u%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Segment == counters.HoldoutSegment || resp.Arm != "m@1" {
			t.Fatalf("served %+v with the holdout arm failing", resp)
		}
		if resp.Fallback {
			fellBack++
		}
	}
	if fellBack < 50 {
		t.Fatalf("%d fallbacks of 200: the holdout arm was hardly chosen", fellBack)
	}
	if got := f.trials("m@2", counters.HoldoutSegment) + f.trials("m@1", counters.HoldoutSegment); got != 0 {
		t.Errorf("%d holdout trials, want none", got)
	}
	if got := f.trials("m@1", counters.AllSegment); got != 200 {
		t.Errorf("%d trials of the fallback m@1, want 200", got)
	}

	f.scorers["m@2"].mode.Store("ok")
	if _, err := f.reg.SetArmState(ctx, "e", "m@2", registry.Paused); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: fmt.Sprintf("v%d", i)})
		if err != nil || resp.Segment == counters.HoldoutSegment || resp.Arm != "m@1" {
			t.Fatalf("paused holdout arm: %+v, %v", resp, err)
		}
	}
}

// With trials counted on impressions, a held-out prediction counts no trial
// when served (its impression will, in the holdout's cell).
func TestHoldoutOnImpression(t *testing.T) {
	f := newFixtureOpt(t, `{"arms": ["m@1"], "policy": {"trials_on": "impression", "holdout": {"arm": "m@1", "share": 0.5}}}`, Options{Seed: 4})
	for i := range 100 {
		resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: fmt.Sprintf("u%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Segment == counters.HoldoutSegment {
			tok, _ := f.signer.Verify(resp.PredictionID)
			if !tok.OnImpression {
				t.Fatalf("token %+v: trials on impression", tok)
			}
		}
	}
	if got := f.trials("m@1", counters.HoldoutSegment); got != 0 {
		t.Errorf("%d holdout trials counted on serve", got)
	}
}

// A user's holdout draw allocates nothing: it is on every request of a
// sticky endpoint with a holdout.
func TestHoldoutDrawAllocates(t *testing.T) {
	user := strings.Repeat("u", MaxUserIDLen)
	if n := testing.AllocsPerRun(100, func() { HoldoutDraw("home", user) }); n != 0 {
		t.Fatalf("%v allocations per draw", n)
	}
	if a, b := HoldoutDraw("home", "u1"), HoldoutDraw("home", "u1"); a != b || a < 0 || a >= 1 {
		t.Fatalf("draws %v and %v", a, b)
	}
}

// The off-policy sums (and the sample-ratio check) never see a held-out
// prediction.
func TestOffPolicySkipsHoldout(t *testing.T) {
	var got int
	ob := NewOffPolicyObserver(offPolicyFunc(func() { got++ }))
	ob.Observe(context.Background(), Outcome{Served: 0, Holdout: true, Arms: []string{"a"}})
	if got != 0 {
		t.Fatal("a held-out prediction entered the off-policy sums")
	}
}

// A batch's entries are held out each on its own, as if sent alone.
func TestHoldoutBatch(t *testing.T) {
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "policy": {"sticky": {"ttl": "1h"}, "holdout": {"arm": "m@2", "share": 0.4}}}`, Options{Seed: 5})
	resps, errs, err := f.r.RecommendBatch(context.Background(), "e", batchOf(64, nil))
	if err != nil {
		t.Fatal(err)
	}
	held := uint64(0)
	for i, resp := range resps {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		want := HoldoutDraw("e", fmt.Sprint("u", i)) < 0.4
		if got := resp.Segment == counters.HoldoutSegment; got != want || (got && resp.Arm != "m@2") {
			t.Fatalf("entry %d: %+v, want held out %v", i, resp, want)
		}
		if want {
			held++
		}
	}
	if got := f.trials("m@2", counters.HoldoutSegment); got != held || held == 0 {
		t.Fatalf("holdout trials %d, want %d", got, held)
	}
	if got := f.trials("m@1", counters.AllSegment) + f.trials("m@2", counters.AllSegment); got != 64-held {
		t.Fatalf("bandit trials %d, want %d", got, 64-held)
	}
}
