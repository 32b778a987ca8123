package offpolicy

import (
	"math"
	"testing"
	"time"
)

// With constant propensities the estimates reduce to plain rates: ips =
// successes/p ÷ n, snips = successes ÷ served.
func TestEstimatesOnKnownSums(t *testing.T) {
	var tb Table
	at := time.Unix(1_764_000_000, 0)
	arms := []string{"a", "b"}
	for i := 0; i < 1000; i++ {
		served := i % 4 / 3 // b one time in four
		p := []float64{0.75, 0.25}[served]
		tb.Served("e", "all", at, arms, []float64{0.75, 0.25}, served, p)
		if (i/4)%10 == 0 {
			tb.Success("e", "all", arms[served], at, p)
		}
	}
	res := tb.Query("e", "all", false, time.Time{}, time.Time{})
	a, b := res.Arms["a"], res.Arms["b"]
	if res.N != 1000 || a.N != 1000 || b.N != 1000 || a.Served != 750 || b.Served != 250 {
		t.Fatalf("n %v, a %+v, b %+v", res.N, a, b)
	}
	// a: 75 successes of 750; b: 25 of 250 (every tenth request).
	for name, e := range map[string]*Estimate{"a": a, "b": b} {
		if math.Abs(e.SNIPS-0.1) > 1e-9 || math.Abs(e.IPS-0.1) > 1e-9 || !(e.CI95[0] < 0.1 && 0.1 < e.CI95[1]) {
			t.Fatalf("%s: %+v", name, e)
		}
	}
	if res.SRMPValue == nil || *res.SRMPValue < 0.5 {
		t.Fatalf("served exactly as expected, SRM p-value %v", res.SRMPValue)
	}
	// Ranges are by minute; other replicas' sums add in.
	if r := tb.Query("e", "all", false, at.Add(time.Minute), time.Time{}); r.N != 0 {
		t.Fatalf("a later range holds %v predictions", r.N)
	}
	tb.SetOthers(map[Key]Minute{{Endpoint: "e", Segment: "all", Minute: at.Unix() - at.Unix()%60}: {N: 1000, Arms: map[string]*Sums{
		"a": {Served: 750, Expected: 750, W: 1000, W2: 1333.33, RW: 100, RW2: 133.33}}}})
	if r := tb.Query("e", "all", false, time.Time{}, time.Time{}); r.N != 2000 || r.Arms["a"].N != 2000 || r.Arms["a"].Served != 1500 {
		t.Fatalf("with another replica's sums: n %v, a %+v", r.N, r.Arms["a"])
	}
}
