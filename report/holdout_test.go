package report

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/registry"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The lift and its delta-method interval on known counts, and where they
// are undefined.
func TestLift(t *testing.T) {
	l, ci := Lift(10000, 600, 1000, 50)
	if l == nil || ci == nil || !near(*l, 0.2) || !near(ci[0], -0.09403853635548654) || !near(ci[1], 0.5894715810616815) {
		t.Fatalf("lift %v, ci %v; want 0.2 in [-0.0940, 0.5895]", l, ci)
	}
	for _, tc := range []struct {
		bt   uint64
		bs   float64
		ht   uint64
		hs   float64
		lift bool
		ci   bool
	}{
		{0, 0, 100, 10, false, false},   // no bandit trial
		{100, 10, 0, 0, false, false},   // no holdout trial
		{100, 10, 100, 0, false, false}, // no holdout click: no ratio
		{100, 0, 100, 10, true, false},  // the bandit never clicked: −100 %, no interval
		{100, 4, 100, 10, true, false},  // too few clicks for an interval
		{100, 5, 100, 5, true, true},
	} {
		l, ci := Lift(tc.bt, tc.bs, tc.ht, tc.hs)
		if (l != nil) != tc.lift || (ci != nil) != tc.ci {
			t.Errorf("Lift(%d, %g, %d, %g) = %v, %v", tc.bt, tc.bs, tc.ht, tc.hs, l, ci)
		}
	}
	if l, ci := Lift(100, 5, 100, 5); !near(*l, 0) || !(ci[0] < 0 && ci[1] > 0) || !near(math.Log1p(ci[0]), -math.Log1p(ci[1])) {
		t.Errorf("equal rates: lift %v, ci %v; want 0 in an interval symmetric on the log scale", *l, *ci)
	}
}

// The report's holdout: the holdout arm's cells against every cell the
// bandit's endpoint-wide posterior reads (every segment, "other"
// included), the same in each segment's report; the holdout's counts are in
// no arm's row. Without a holdout it is null.
func TestReportHoldout(t *testing.T) {
	tb := &counters.Table{}
	ep := endpoint("surface")
	ep.Policy.Holdout = &registry.Holdout{Arm: "mf@1", Share: 0.1}
	fill(tb, "surface=music", "mf@1", 4000, 200)
	fill(tb, "surface=news", "mf@2", 5000, 350)
	fill(tb, counters.OtherSegment, "mf@2", 1000, 50)
	fill(tb, counters.HoldoutSegment, "mf@1", 1000, 50)
	// Cells left from before segment_by are not the bandit's now.
	fill(tb, counters.AllSegment, "mf@2", 777, 77)
	tb.Refresh(nil)
	for _, seg := range []string{"", "surface=music"} {
		r := Build(Input{Endpoint: ep, Table: tb, Segment: seg, Now: time.Now(), Draws: 1000})
		h := r.Holdout
		if h == nil || h.Arm != "mf@1" || h.Share != 0.1 || h.Trials != 1000 || h.Successes != 50 || !near(h.Rate, 0.05) ||
			h.BanditTrials != 10000 || h.BanditSuccesses != 600 || !near(h.BanditRate, 0.06) {
			t.Fatalf("segment %q: holdout %+v", seg, h)
		}
		if h.Lift == nil || !near(*h.Lift, 0.2) || h.LiftCI95 == nil || !near(h.LiftCI95[0], -0.09403853635548654) {
			t.Fatalf("segment %q: lift %v, ci %v", seg, h.Lift, h.LiftCI95)
		}
		for _, s := range r.Segments {
			if s == counters.HoldoutSegment {
				t.Fatalf("segments %v list the holdout", r.Segments)
			}
		}
	}
	r := Build(Input{Endpoint: ep, Table: tb, Now: time.Now(), Draws: 1000})
	if r.Arms[0].Trials != 4000 || r.Arms[1].Trials != 6000 {
		t.Fatalf("arm rows %d, %d trials: the holdout's are not the bandit's", r.Arms[0].Trials, r.Arms[1].Trials)
	}
	js, _ := json.Marshal(r.Holdout)
	for _, k := range []string{`"arm":`, `"trials":`, `"rate":`, `"bandit_rate":`, `"lift":`, `"lift_ci95":[`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("holdout JSON %s has no %s", js, k)
		}
	}

	// No clicks yet: the lift and its interval are null.
	empty := &counters.Table{}
	js, _ = json.Marshal(Build(Input{Endpoint: ep, Table: empty, Now: time.Now(), Draws: 100}).Holdout)
	if !strings.Contains(string(js), `"lift":null,"lift_ci95":null`) {
		t.Errorf("holdout without data: %s", js)
	}
	ep.Policy.Holdout = nil
	js, _ = json.Marshal(Build(Input{Endpoint: ep, Table: tb, Now: time.Now(), Draws: 100}))
	if !strings.Contains(string(js), `"holdout":null`) {
		t.Errorf("report without a holdout: %s", js)
	}
}
