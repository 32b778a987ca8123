package router

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/report"
)

// simulate serves n requests on endpoint e with clicks drawn from rate(arm,
// step), recording successes as feedback would, and returns the off-policy
// result over everything.
func simulate(t *testing.T, endpoint string, seed uint64, n int, rate func(arm string, step int) float64, prep func(f *fixture)) (*fixture, offpolicy.Result) {
	t.Helper()
	return simulateIn(t, endpoint, seed, n, nil, func(arm, _ string, step int) float64 { return rate(arm, step) }, prep)
}

// simulateIn is simulate with request i's context given by ctxOf(i) (nil
// for none) and rates by the segment the prediction was served in.
func simulateIn(t *testing.T, endpoint string, seed uint64, n int, ctxOf func(step int) map[string]string,
	rate func(arm, segment string, step int) float64, prep func(f *fixture)) (*fixture, offpolicy.Result) {
	t.Helper()
	offp := &offpolicy.Table{}
	f := newFixtureOpt(t, endpoint, Options{Observers: []Observer{NewOffPolicyObserver(offp)}, Seed: seed})
	if prep != nil {
		prep(f)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := 0; i < n; i++ {
		req := &Request{Endpoint: "e", UserID: "u"}
		if ctxOf != nil {
			req.Context = ctxOf(i)
		}
		resp, err := f.r.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := f.signer.Verify(resp.PredictionID)
		if rng.Float64() < rate(resp.Arm, tok.Segment, i) {
			f.table.Cell(counters.Key{Endpoint: "e", Segment: tok.Segment, Arm: tok.Arm}).AddDurable(0, 1, 0)
			offp.Success("e", tok.Segment, tok.Arm, tok.Time, tok.Propensity)
		}
	}
	return f, offp.Query("e", "all", false, zeroTime, zeroTime)
}

// Click rates change halfway: m@1 is worse, then better; over all requests
// both average 0.25. Thompson moves traffic meanwhile, so m@1's plain rate
// mostly reflects the second half, while its SNIPS estimate reweights by
// the logged propensities and covers the true average.
//
// Every run is deterministic (seeded router, synchronous share refresh,
// seeded clicks); the thresholds hold for any seeds, each failing a correct
// implementation with probability below 1e-4:
//   - pooled: the mean of the 12 SNIPS estimates is within 5 standard
//     errors of 0.25, its standard error √(Σ seᵢ²)/12 from each run's
//     interval (seᵢ = width/3.92), 0.0063. SNIPS is slightly biased here
//     (the mean over 84 runs on other seeds was 0.2547, +0.8 of that
//     standard error), which leaves 4.2 standard errors: a normal tail of
//     1.3e-5, given intervals of the right width, which the coverage below
//     shows.
//   - per run: over 150 other seeds the interval covered 0.25 in 142 runs
//     (0.947) and snips was closer to the truth than the plain rate in 134
//     (0.893). At rates 0.92 and 0.86, below both, 7 or more misses of 12
//     have probability 1.2e-5 and 8 or more 4.3e-5 (binomial tails): so
//     at least 6 covered and 5 closer.
func TestOffPolicyAgainstKnownTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 36,000 requests")
	}
	const n, truth = 3000, 0.25
	rate := swapHalfway(n)
	covered, biased := 0, 0
	var sumSNIPS, sumVar float64
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
		se := (est.CI95[1] - est.CI95[0]) / (2 * 1.96)
		sumSNIPS += est.SNIPS
		sumVar += se * se
		t.Logf("seed %2d: m@1 served %4d, plain rate %.3f, snips %.3f [%.3f, %.3f]", seed, tr, plain, est.SNIPS, est.CI95[0], est.CI95[1])
	}
	k := float64(len(seeds))
	mean, seMean := sumSNIPS/k, math.Sqrt(sumVar)/k
	t.Logf("mean snips %.4f, standard error %.4f", mean, seMean)
	if abs(mean-truth) > 5*seMean {
		t.Errorf("mean snips estimate %.4f over %d runs, want %.2f ± %.4f (5 standard errors)", mean, len(seeds), truth, 5*seMean)
	}
	if covered < 6 {
		t.Fatalf("the snips interval covered the true 0.25 in %d of %d runs", covered, len(seeds))
	}
	if biased < 5 {
		t.Fatalf("the plain rate was further from the truth than snips in only %d of %d runs", biased, len(seeds))
	}
}

// swapHalfway is the drifting world of TestOffPolicyAgainstKnownTruth over
// n requests: m@2 clicks at 0.25 throughout, m@1 at 0.10 then 0.40.
func swapHalfway(n int) func(arm string, step int) float64 {
	return func(arm string, step int) float64 {
		if arm == "m@2" {
			return 0.25
		}
		if step < n/2 {
			return 0.10
		}
		return 0.40
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Served shares forced away from the policy's (every m@1 choice fails over
// to m@2) raise the sample-ratio-mismatch check. m@1 is chosen about half
// the time and served never: over 600 requests a χ² statistic in the
// hundreds, p far below 1e-50, for any seed.
func TestSampleRatioMismatch(t *testing.T) {
	_, res := simulate(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2"}`, 1, 600,
		func(string, int) float64 { return 0.2 }, func(f *fixture) { f.scorers["m@1"].mode.Store("fail") })
	if res.SRMPValue == nil || *res.SRMPValue >= 0.001 {
		t.Fatalf("SRM p-value %v, want < 0.001", res.SRMPValue)
	}
}

// Two copies of one model (an A/A test) raise the check about as often as
// its nominal rate: with 30 runs at p < 0.001, essentially never.
//
// If P(p < α) ≤ α (150 other seeds gave p < 0.05 twice: the test is if
// anything conservative), 3 or more of 30 below 0.001 have probability
// 4e-6, and 9 or more below 0.05 1.1e-5 (binomial tails). (The earlier
// limits, 2 and 7, were reached with probability 4e-4 and 6e-4.)
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
	if raised > 2 || small > 8 {
		t.Fatalf("A/A: p < 0.001 in %d of 30 runs, p < 0.05 in %d; want about 0 and 1.5", raised, small)
	}
}

// The doubly robust estimate in the world of TestOffPolicyAgainstKnownTruth
// (m@1's rate 0.10 then 0.40, m@2's 0.25; truth 0.25 for both), as the
// report computes it: the direct part is m@1's posterior mean (prior
// Beta(1, 1)), which the drift pulls towards the second half's rate, and
// the reweighted residuals correct it.
//
// DR is about as accurate as SNIPS here, not more: over 144 other seeds
// both intervals covered 0.25 in 132 runs (0.917), the root mean squared
// error was 0.0234 for DR and 0.0228 for SNIPS, and in blocks of 12 seeds
// DR's was 0.99 to 1.08 times SNIPS'. (With one segment, dr = ips + q·(1 −
// W/n), and snips = ips + snips·(1 − W/n) exactly: SNIPS is the DR whose
// direct part is SNIPS itself, which the drift does not bias, while the
// posterior mean is. With two segments, below, the posterior means per
// segment do not do better either.)
//
// Thresholds, each failing a correct implementation with probability below
// 1e-4 on the arguments of the SNIPS test:
//   - pooled: the mean of the 12 estimates is within 5 standard errors of
//     0.25;
//   - per run: the interval covered 0.25 in at least 6 of 12 runs;
//   - against SNIPS: DR's root mean squared error over the 12 runs is at
//     most 1.15 times SNIPS' (the blocks' ratios: mean 1.03, sd 0.023);
//     1.5 in the world of two segments below.
func TestDoublyRobustAgainstKnownTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 72,000 requests")
	}
	const n = 3000
	for _, w := range []struct {
		name, endpoint string
		ctxOf          func(step int) map[string]string
		rate           func(arm, segment string, step int) float64
		truth          float64
		// ratio bounds dr's root mean squared error by snips'.
		ratio float64
	}{
		{"one segment", `{"arms": ["m@1", "m@2"], "policy": {"min_share": 0.1}}`, nil,
			func(arm, _ string, step int) float64 { return swapHalfway(n)(arm, step) }, 0.25, 1.15},
		// Two segments, alternate requests, m@1's rate drifting in both:
		// k=a 0.05 then 0.25, k=b 0.30 then 0.70 (truth (0.15 + 0.5)/2).
		// Over 144 other seeds both intervals covered the truth in 136
		// and 139 runs, the errors' ratio was 1.03 overall, and in blocks
		// of 12 seeds 0.91 to 1.23 (mean 1.06, sd 0.11): 1.5 is 4 sd.
		{"two segments", `{"arms": ["m@1", "m@2"], "policy": {"min_share": 0.1, "segment_by": ["k"]}}`,
			func(i int) map[string]string { return map[string]string{"k": []string{"a", "b"}[i%2]} },
			func(arm, segment string, step int) float64 {
				rates := map[string][3]float64{"k=a": {0.15, 0.05, 0.25}, "k=b": {0.5, 0.30, 0.70}}[segment]
				switch {
				case arm == "m@2":
					return rates[0]
				case step < n/2:
					return rates[1]
				}
				return rates[2]
			}, 0.325, 1.5},
	} {
		t.Run(w.name, func(t *testing.T) {
			covered := 0
			var sumDR, sumVar, sqDR, sqSNIPS float64
			seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
			for _, seed := range seeds {
				f, res := simulateIn(t, w.endpoint, seed, n, w.ctxOf, w.rate, nil)
				ep := f.reg.Snapshot().Endpoints["e"]
				rep := report.Build(report.Input{Endpoint: ep, Table: f.table, Segment: "all", Now: time.Now(), OffPolicy: &res, Draws: 1000})
				o := rep.Arms[0].OffPolicy
				if o == nil {
					t.Fatal("no off_policy for m@1")
				}
				if o.DRCI95[0] <= w.truth && w.truth <= o.DRCI95[1] {
					covered++
				}
				se := (o.DRCI95[1] - o.DRCI95[0]) / (2 * 1.96)
				sumDR += o.DR
				sumVar += se * se
				sqDR += (o.DR - w.truth) * (o.DR - w.truth)
				sqSNIPS += (o.SNIPS - w.truth) * (o.SNIPS - w.truth)
				t.Logf("seed %2d: m@1 rate %.3f, snips %.3f [%.3f, %.3f], dr %.3f [%.3f, %.3f]", seed, rep.Arms[0].Rate, o.SNIPS, o.CI95[0], o.CI95[1], o.DR, o.DRCI95[0], o.DRCI95[1])
			}
			k := float64(len(seeds))
			mean, seMean := sumDR/k, math.Sqrt(sumVar)/k
			rmseDR, rmseSNIPS := math.Sqrt(sqDR/k), math.Sqrt(sqSNIPS/k)
			t.Logf("mean dr %.4f, standard error %.4f; root mean squared error dr %.4f, snips %.4f", mean, seMean, rmseDR, rmseSNIPS)
			if abs(mean-w.truth) > 5*seMean {
				t.Errorf("mean dr estimate %.4f over %d runs, want %.3f ± %.4f (5 standard errors)", mean, len(seeds), w.truth, 5*seMean)
			}
			if covered < 6 {
				t.Errorf("the dr interval covered the true %.3f in %d of %d runs", w.truth, covered, len(seeds))
			}
			if rmseDR > w.ratio*rmseSNIPS {
				t.Errorf("dr's root mean squared error %.4f, snips' %.4f (at most %.2f times)", rmseDR, rmseSNIPS, w.ratio)
			}
		})
	}
}
