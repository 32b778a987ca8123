package feedback

import (
	"context"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/predtoken"
)

// A click on a held-out prediction counts in the holdout's cell, the
// segment its token names, and nowhere else: not in the bandit's segment
// nor its aggregate, not in the off-policy sums.
func TestHoldoutClickCountsInTheHoldoutCell(t *testing.T) {
	f := newFixture(t, func(string, string) (float64, bool) { return 0, true })
	s, signer, table, offp := f.s, f.signer, f.table, f.offp
	now := time.Now()
	held := signer.Sign(&predtoken.Token{Endpoint: "home", Arm: "mf@1", Segment: counters.HoldoutSegment, Time: now,
		Propensity: 1, Window: time.Hour, Items: 2, ID: predtoken.NewID()})
	bandit := signer.Sign(&predtoken.Token{Endpoint: "home", Arm: "mf@1", Segment: counters.AllSegment, Time: now,
		Propensity: 0.5, Window: time.Hour, Items: 2, ID: predtoken.NewID()})
	res, err := s.Record(context.Background(), []Event{{PredictionID: held, Type: Click, ItemID: "a"},
		{PredictionID: bandit, Type: Click, ItemID: "a"}})
	if err != nil || res.Accepted != 2 {
		t.Fatalf("record: %+v, %v", res, err)
	}
	cell := func(seg string) float64 {
		c := table.Lookup(counters.Key{Endpoint: "home", Segment: seg, Arm: "mf@1"})
		if c == nil {
			return 0
		}
		_, su := c.Counts()
		return su
	}
	if h, b, agg := cell(counters.HoldoutSegment), cell(counters.AllSegment), cell(counters.AggregateSegment); h != 1 || b != 1 || agg != 0 {
		t.Fatalf("successes: holdout %g, all %g, aggregate %g; want 1, 1, 0", h, b, agg)
	}
	// The off-policy sums hold the bandit's click alone: 1/p = 2.
	if got := offpSuccessWeight(offp); got != 2 {
		t.Fatalf("off-policy success weight %v, want 2 (the bandit's click only)", got)
	}
}

// offpSuccessWeight sums the stored success weights Σ 1/p of every series.
func offpSuccessWeight(offp *offpolicy.Table) float64 {
	var rw float64
	for _, m := range offp.Dirty() {
		for _, a := range m.Arms {
			rw += a.RW
		}
	}
	return rw
}
