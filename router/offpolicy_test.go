package router

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
)

// simulate serves n requests on endpoint e with clicks drawn from rate(arm,
// step), recording successes as feedback would, and returns the off-policy
// result over everything.
func simulate(t *testing.T, endpoint string, seed uint64, n int, rate func(arm string, step int) float64, prep func(f *fixture)) (*fixture, offpolicy.Result) {
	t.Helper()
	offp := &offpolicy.Table{}
	f := newFixtureOpt(t, endpoint, Options{OffPolicy: offp, Seed: seed})
	if prep != nil {
		prep(f)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := 0; i < n; i++ {
		resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
		if err != nil {
			t.Fatal(err)
		}
		if rng.Float64() < rate(resp.Arm, i) {
			tok, _ := f.signer.Verify(resp.PredictionID)
			f.table.Cell(counters.Key{Endpoint: "e", Segment: tok.Segment, Arm: tok.Arm}).AddDurable(0, 1)
			offp.Success("e", tok.Segment, tok.Arm, tok.Time, tok.Propensity)
		}
	}
	return f, offp.Query("e", "all", false, zeroTime, zeroTime)
}

// Click rates change halfway: m@1 is worse, then better; over all requests
// both average 0.25. Thompson moves traffic meanwhile, so m@1's plain rate
// mostly reflects the second half, while its SNIPS estimate reweights by
// the logged propensities and covers the true average.
func TestOffPolicyAgainstKnownTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 36,000 requests")
	}
	const n, truth = 3000, 0.25
	rate := func(arm string, step int) float64 {
		if arm == "m@2" {
			return 0.25
		}
		if step < n/2 {
			return 0.10
		}
		return 0.40
	}
	covered, biased := 0, 0
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, seed := range seeds {
		f, res := simulate(t, `{"arms": ["m@1", "m@2"], "policy": {"min_share": 0.1}}`, seed, n, rate, nil)
		est := res.Arms["m@1"]
		c := f.table.Lookup(counters.Key{Endpoint: "e", Segment: "all", Arm: "m@1"})
		tr, su := c.Counts()
		plain := float64(su) / float64(tr)
		if est.CI95[0] <= truth && truth <= est.CI95[1] {
			covered++
		}
		if abs(plain-truth) > abs(est.SNIPS-truth) {
			biased++
		}
		t.Logf("seed %2d: m@1 served %4d, plain rate %.3f, snips %.3f [%.3f, %.3f]", seed, tr, plain, est.SNIPS, est.CI95[0], est.CI95[1])
	}
	// A 95% interval covers about 95% of the time; allow for 12 seeds.
	if covered < 10 {
		t.Fatalf("the snips interval covered the true 0.25 in %d of %d runs", covered, len(seeds))
	}
	if biased < 9 {
		t.Fatalf("the plain rate was further from the truth than snips in only %d of %d runs", biased, len(seeds))
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Served shares forced away from the policy's (every m@1 choice fails over
// to m@2) raise the sample-ratio-mismatch check.
func TestSampleRatioMismatch(t *testing.T) {
	_, res := simulate(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2"}`, 1, 600,
		func(string, int) float64 { return 0.2 }, func(f *fixture) { f.scorers["m@1"].mode.Store("fail") })
	if res.SRMPValue == nil || *res.SRMPValue >= 0.001 {
		t.Fatalf("SRM p-value %v, want < 0.001", res.SRMPValue)
	}
}

// Two copies of one model (an A/A test) raise the check about as often as
// its nominal rate: with 30 runs at p < 0.001, essentially never.
func TestSampleRatioAA(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 24,000 requests")
	}
	raised, small := 0, 0
	for seed := uint64(1); seed <= 30; seed++ {
		_, res := simulate(t, `{"arms": ["m@1", "m@2"]}`, seed, 800, func(string, int) float64 { return 0.2 }, nil)
		if res.SRMPValue == nil {
			t.Fatal("no SRM p-value")
		}
		if *res.SRMPValue < 0.001 {
			raised++
		}
		if *res.SRMPValue < 0.05 {
			small++
		}
	}
	if raised > 1 || small > 6 {
		t.Fatalf("A/A: p < 0.001 in %d of 30 runs, p < 0.05 in %d; want about 0 and 1.5", raised, small)
	}
}
