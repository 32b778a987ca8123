package router

import (
	"context"
	"math"
	"testing"

	"github.com/modelgate/modelgate/counters"
)

// Under linear-thompson the propensity logged is the probability with which
// the router picks the arm for this request's context: per context, each
// arm's selection frequency matches it (5σ, as for Thompson). The token
// carries the request's context vector and layout; with trials_on serve
// every served prediction adds x xᵀ to its arm's sums, and trials on
// impression add nothing until the impression.
func TestLinearPropensityPerContext(t *testing.T) {
	const body = `{"arms": ["m@1", "m@2"], "policy": {"type": "linear-thompson", "trials_on": "impression", "min_share": 0.05,
		"context_features": [{"context": "surface", "values": ["home", "music"]}]}}`
	f := newFixtureOpt(t, body, Options{Seed: 9})
	ep := f.reg.Snapshot().Endpoints["e"]
	m := ep.Policy.LinearModel()
	// Evidence: m@1 clicks on home, m@2 on music, 30 trials each way.
	for _, arm := range []string{"m@1", "m@2"} {
		c := f.table.Linear(counters.LinKey{Endpoint: "e", Arm: arm, Layout: m.Layout()}, m.Dims())
		for i := range 60 {
			x := []float64{1, 0, 0}
			x[1+i%2] = 1
			c.AddTrial(x)
			if (arm == "m@1") == (i%2 == 0) && i%3 != 0 {
				c.AddReward(x, 1)
			}
		}
	}
	f.table.Refit()
	for _, surface := range []string{"home", "music"} {
		const n = 20000
		count := map[string]int{}
		prop := map[string]float64{}
		for range n {
			resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u", K: 1, Context: map[string]string{"surface": surface}})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := f.signer.Verify(resp.PredictionID)
			if err != nil {
				t.Fatal(err)
			}
			want := []float64{1, 0, 0}
			if surface == "home" {
				want[1] = 1
			} else {
				want[2] = 1
			}
			if tok.Layout != m.Layout() || len(tok.X) != 3 || tok.X[0] != want[0] || tok.X[1] != want[1] || tok.X[2] != want[2] {
				t.Fatalf("token x %v layout %x, want %v %x", tok.X, tok.Layout, want, m.Layout())
			}
			count[resp.Arm]++
			prop[resp.Arm] = tok.Propensity
		}
		for arm, c := range count {
			freq, p := float64(c)/n, prop[arm]
			if tol := 5 * math.Sqrt(p*(1-p)/n); math.Abs(freq-p) > tol {
				t.Errorf("%s on %s: chosen %.4f of the time, logged propensity %.4f (± %.4f)", arm, surface, freq, p, tol)
			}
		}
		best := map[string]string{"home": "m@1", "music": "m@2"}[surface]
		if prop[best] < 0.6 {
			t.Errorf("on %s the better arm %s has propensity %.3f", surface, best, prop[best])
		}
	}
	// trials_on impression: serving added no trial to the sums.
	if n := f.table.Linear(counters.LinKey{Endpoint: "e", Arm: "m@1", Layout: m.Layout()}, 3).Sums()[0]; n != 60 {
		t.Fatalf("m@1's sums hold %v trials, want the 60 given (impressions count them)", n)
	}
}
