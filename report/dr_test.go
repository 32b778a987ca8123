package report

import (
	"math"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
)

// The report's doubly robust estimate takes each segment's posterior mean
// as its direct part: with the prior Beta(1, 1), mf@1's 2 successes in 8
// trials in k=a give q = 3/10 and its 0 in 3 in k=b q = 1/5, the sums of
// offpolicy's hand-worked case (TestDoublyRobustOnKnownSums, one block):
// dr = 0.25, se = √((3.64/8 − 0.0625)/8).
func TestDoublyRobustUsesSegmentPosteriors(t *testing.T) {
	tb := &counters.Table{}
	fill(tb, "k=a", "mf@1", 8, 2)
	fill(tb, "k=b", "mf@1", 3, 0)
	fill(tb, "k=a", "mf@2", 8, 0)
	fill(tb, "k=b", "mf@2", 8, 4)
	// Per segment: k=a, mf@1 and mf@2 two each at p = 0.5, one success of
	// mf@1; k=b, mf@1 one at p = 0.25, mf@2 three at p = 0.75.
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	res := offpolicy.Result{N: 8, Arms: map[string]*offpolicy.Estimate{"mf@1": {N: 8, Served: 3}, "mf@2": {N: 8, Served: 5}},
		BySegment: map[string]offpolicy.Minute{
			"k=a": {N: 4, Arms: map[string]*offpolicy.Sums{"mf@1": {Served: 2, W: 4, W2: 8, RW: 2, RW2: 4}, "mf@2": {Served: 2, W: 4, W2: 8}}},
			"k=b": {N: 4, Arms: map[string]*offpolicy.Sums{"mf@1": {Served: 1, W: 4, W2: 16}, "mf@2": {Served: 3, W: 4, W2: 16.0 / 3}}},
		}}
	r := Build(Input{Endpoint: endpoint("k"), Table: tb, Segment: "all", Now: at, OffPolicy: &res, Draws: 1000})
	o := r.Arms[0].OffPolicy
	hi := 0.25 + 1.96*math.Sqrt((3.64/8-0.0625)/8)
	if o == nil || math.Abs(o.DR-0.25) > 1e-9 || o.DRCI95[0] != 0 || math.Abs(o.DRCI95[1]-hi) > 1e-9 {
		t.Fatalf("mf@1 off_policy %+v, want dr 0.25 [0, %.5f]", o, hi)
	}
	// mf@2, q = 1/10 in k=a and 5/10 in k=b, never a success logged:
	// (0.1·(4 − 4) + 0.5·(4 − 3/0.75)) / 8 = 0.
	if o := r.Arms[1].OffPolicy; o == nil || math.Abs(o.DR) > 1e-9 {
		t.Fatalf("mf@2 off_policy %+v, want dr 0", o)
	}
}
