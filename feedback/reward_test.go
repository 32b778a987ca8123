package feedback

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/predtoken"
)

func val(v float64) *Value { x := Value(v); return &x }

// On a value endpoint (cap 100) a prediction's reward events add
// min(Σ value, 100) / 100 to its arm's successes, one event per item (a
// repeat is a duplicate whatever its value), and clicks are accepted but
// add nothing; on a click endpoint a reward event is unknown_type; a
// value that is missing, negative or not finite, or a value on another
// type, is invalid_value.
func TestValueRewards(t *testing.T) {
	caps := map[string]float64{"home": 100, "clicks": 0}
	f := newFixture(t, func(ep, _ string) (float64, bool) { c, ok := caps[ep]; return c, ok })
	s, signer, table, db, offp := f.s, f.signer, f.table, f.db, f.offp
	at := time.Now()
	tok := func(ep string) string {
		return signer.Sign(&predtoken.Token{Endpoint: ep, Arm: "mf@1", Segment: "all", Time: at, Window: time.Hour, Items: 3, Propensity: 0.5, ID: predtoken.NewID()})
	}
	p1, p2, c1 := tok("home"), tok("home"), tok("clicks")
	steps := []struct {
		ev        Event
		want      string  // "accepted", "duplicate", or a rejection code
		successes float64 // of home's cell afterwards
	}{
		{Event{PredictionID: p1, Type: Reward, ItemID: "a", Value: val(30)}, "accepted", 0.3},
		{Event{PredictionID: p1, Type: Reward, ItemID: "a", Value: val(50)}, "duplicate", 0.3},
		{Event{PredictionID: p1, Type: Reward, ItemID: "b", Value: val(50)}, "accepted", 0.8},
		{Event{PredictionID: p1, Type: Reward, ItemID: "c", Value: val(80)}, "accepted", 1},
		{Event{PredictionID: p1, Type: Click, ItemID: "a"}, "accepted", 1},
		{Event{PredictionID: p2, Type: Reward, ItemID: "", Value: val(250)}, "accepted", 2},
		{Event{PredictionID: p2, Type: Reward, ItemID: "x", Value: val(0)}, "accepted", 2},
		{Event{PredictionID: p2, Type: Reward, ItemID: "y"}, CodeInvalidValue, 2},
		{Event{PredictionID: p2, Type: Reward, ItemID: "y", Value: val(-1)}, CodeInvalidValue, 2},
		{Event{PredictionID: p2, Type: Reward, ItemID: "y", Value: val(math.NaN())}, CodeInvalidValue, 2},
		{Event{PredictionID: p2, Type: Reward, ItemID: "y", Value: val(math.Inf(1))}, CodeInvalidValue, 2},
		{Event{PredictionID: p2, Type: Click, ItemID: "y", Value: val(1)}, CodeInvalidValue, 2},
		{Event{PredictionID: c1, Type: Reward, ItemID: "a", Value: val(1)}, CodeUnknownType, 2},
		{Event{PredictionID: c1, Type: Click, ItemID: "a"}, "accepted", 2},
	}
	for i, st := range steps {
		res, err := s.Record(context.Background(), []Event{st.ev})
		if err != nil {
			t.Fatal(err)
		}
		got := outcome(res)
		_, su := table.Cell(counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}).Counts()
		if got != st.want || math.Abs(su-st.successes) > 1e-9 {
			t.Fatalf("step %d (%s %q): %s with %g successes, want %s with %g", i, st.ev.Type, st.ev.ItemID, got, su, st.want, st.successes)
		}
	}
	// The click endpoint counted its click as a whole success.
	if _, su := table.Cell(counters.Key{Endpoint: "clicks", Segment: "all", Arm: "mf@1"}).Counts(); su != 1 {
		t.Fatalf("click endpoint: %g successes, want 1", su)
	}
	// The store holds what memory holds, and the off-policy sums each
	// prediction's final reward r once: Σ r/p = (1 + 1) / 0.5.
	es, err := db.LoadCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Key.Endpoint == "home" && (e.Successes != 0 || e.Reward != 2*counters.RewardUnit) {
			t.Fatalf("stored %+v, want 0 whole successes and 2 successes' reward units", e)
		}
	}
	var rw, rw2 float64
	for _, m := range offp.Dirty() {
		if a := m.Arms["mf@1"]; a != nil {
			rw, rw2 = rw+a.RW, rw2+a.RW2
		}
	}
	// Both endpoints are in Dirty; home's two predictions and the click
	// endpoint's one each end at r = 1.
	if math.Abs(rw-3/0.5) > 1e-9 || math.Abs(rw2-3/0.25) > 1e-9 {
		t.Fatalf("off-policy sums rw %g, rw2 %g; want %g and %g", rw, rw2, 3/0.5, 3/0.25)
	}
}
