package sim

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/bandit"
)

// gapRates is K arms, one at best and K−1 at best−gap: --k --best --gap.
func gapRates(k int, best, gap float64) []float64 {
	r := make([]float64, k)
	for i := range r {
		r[i] = best - gap
	}
	r[0] = best
	return r
}

func mustRun(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// at returns the mean regret recorded at step t.
func at(t *testing.T, r *Result, step int) float64 {
	t.Helper()
	p, ok := r.At(step)
	if !ok {
		t.Fatalf("%s: step %d not recorded", r.Label, step)
	}
	return p.RegretMean
}

func TestBernoulliKL(t *testing.T) {
	tests := []struct {
		p, q, want float64
	}{
		{0.4, 0.5, 0.4*math.Log(0.8) + 0.6*math.Log(1.2)},
		{0.5, 0.5, 0},
		{0, 0.5, math.Log(2)},
		{1, 0.5, math.Log(2)},
		{0.5, 1, math.Inf(1)},
		{0, 0, 0},
	}
	for _, tt := range tests {
		if got := BernoulliKL(tt.p, tt.q); math.Abs(got-tt.want) > 1e-12 && got != tt.want {
			t.Errorf("KL(%v‖%v) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestLaiRobbins(t *testing.T) {
	// The reference: K = 10, p* = 0.5, gap 0.1, T = 1e5 gives
	// C·ln T = 514.6.
	c := LaiRobbinsConstant(gapRates(10, 0.5, 0.1))
	if got := c * math.Log(1e5); math.Abs(got-514.6) > 0.5 {
		t.Errorf("C·ln 1e5 = %.2f (C = %.4f), want 514.6 ± 0.5", got, c)
	}
	for _, tt := range []struct {
		name  string
		rates []float64
		want  float64
	}{
		{"equal arms", []float64{0.3, 0.3, 0.3}, 0},
		{"one arm", []float64{0.3}, 0},
		{"no arms", nil, 0},
		// A single failure rules out p* = 1 for an arm: nothing to pay.
		{"perfect best arm", []float64{1, 0.5}, 0},
		{"zero-rate arm", []float64{0, 0.5}, 0.5 / math.Log(2)},
	} {
		if got := LaiRobbinsConstant(tt.rates); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s: C = %v, want %v", tt.name, got, tt.want)
		}
	}

	// The bound is reported for stationary runs only.
	base := Config{Rates: []float64{0.5, 0.4}, Horizon: 100, Runs: 2}
	if r := mustRun(t, base); r.LaiRobbins == nil || r.Checkpoints[0].LaiRobbins == nil {
		t.Error("stationary run: no Lai–Robbins bound")
	} else if want := LaiRobbinsConstant(base.Rates) * math.Log(100); math.Abs(*r.LaiRobbins-want) > 1e-6 {
		t.Errorf("lai_robbins %v, want C·ln 100 = %v", *r.LaiRobbins, want)
	}
	for name, c := range map[string]Config{
		"churn":     {Rates: []float64{0.5, 0.4}, NewArmPrior: &bandit.Prior{Alpha: 1, Beta: 1}, Churn: 0.01, Horizon: 100, Runs: 2},
		"change":    {Rates: []float64{0.5, 0.4}, Changes: []Change{{At: 50, Rates: []float64{0.4, 0.5}}}, Horizon: 100, Runs: 2},
		"arm prior": {K: 2, ArmPrior: &bandit.Prior{Alpha: 1, Beta: 1}, Horizon: 100, Runs: 2},
	} {
		if r := mustRun(t, c); r.LaiRobbins != nil || r.LaiRobbinsC != nil || r.Checkpoints[0].LaiRobbins != nil {
			t.Errorf("%s: Lai–Robbins bound reported for a non-stationary environment", name)
		}
	}
}

// TestStationaryRegret is the reference experiment of docs/bandits.md: K = 10
// arms, p* = 0.5, gap 0.1, T = 1e5. Thompson sampling's mean regret over 100
// runs is 249 ± 14 in the reference implementation; it must be within 15%
// of 250, below ε-greedy's and UCB1's, and batching the feedback by 100
// steps may raise it only modestly.
//
// 100 runs × 1e5 steps, twice, take about 10 s of CPU (5 s on the 2 cores
// CI has). Under the race detector, 4–5 times slower, it uses 12 runs.
//
// Tolerances, for a failure probability below 1e-4 whatever the seed
// (the runs are seeded and combined in order, so a given seed always gives
// the same numbers): over seeds 1–8 this implementation's mean regret was
// 243–262, 253 on average, with standard errors 4–7 over 100 runs (a run's
// standard deviation about 60, skewed to the right). 15% of 250 leaves 34
// above 253: over 5 standard errors (normal tail < 3e-7). 12 runs have a
// standard error near 17, and 35% leaves 84 above: 4.9 of them (5e-7; the
// right skew of 12 runs' mean costs less than the margin above 4σ). (It
// was 30% for 12 runs: 3.9 standard errors, 5e-5 on the normal tail, more
// with the skew.) ε-greedy's and UCB1's regrets are over 700 above
// Thompson's, dozens of standard errors. Batching by 100: the two share
// seeds and differ by a few standard errors at most, so "clearly lower"
// (6 summed standard errors, > 4.2 of the difference) and 2× (over 10 of
// it) are each below 2e-5.
func TestStationaryRegret(t *testing.T) {
	runs, tol := 100, 0.15
	if raceEnabled {
		runs, tol = 12, 0.35
	}
	env := Config{Rates: gapRates(10, 0.5, 0.1), Horizon: 100_000, Seed: 1}
	run := func(p Policy, runs, batch int) *Result {
		c := env
		c.Policy, c.Runs, c.Batch = p, runs, batch
		return mustRun(t, c)
	}
	ts := run(Policy{Name: Thompson}, runs, 1)
	t.Logf("thompson: regret %.1f ± %.1f over %d runs (Lai–Robbins %.1f)", ts.RegretMean, ts.RegretStderr, runs, *ts.LaiRobbins)
	if math.Abs(ts.RegretMean-250) > tol*250 {
		t.Errorf("thompson regret %.1f ± %.1f, want 250 ± %.0f%%", ts.RegretMean, ts.RegretStderr, 100*tol)
	}

	// The others are far worse and cheap to simulate: 20 runs suffice.
	eg := run(Policy{Name: EpsilonGreedy, Epsilon: 0.1}, 20, 1)
	ucb := run(Policy{Name: UCB1}, 20, 1)
	t.Logf("epsilon-greedy 0.1: %.1f ± %.1f; ucb1: %.1f ± %.1f", eg.RegretMean, eg.RegretStderr, ucb.RegretMean, ucb.RegretStderr)
	for _, o := range []*Result{eg, ucb} {
		if !(ts.RegretMean+2*ts.RegretStderr < o.RegretMean-2*o.RegretStderr) {
			t.Errorf("thompson regret %.1f ± %.1f not clearly below %s's %.1f ± %.1f",
				ts.RegretMean, ts.RegretStderr, o.Policy, o.RegretMean, o.RegretStderr)
		}
	}

	// Chapelle & Li (2011): Thompson sampling barely suffers from feedback
	// delayed by 100 steps. Within the runs' noise it may even come out
	// lower; it must stay below 2× and not be clearly lower.
	b100 := run(Policy{Name: Thompson}, runs, 100)
	ratio := b100.RegretMean / ts.RegretMean
	t.Logf("thompson batch 100: %.1f ± %.1f (×%.2f)", b100.RegretMean, b100.RegretStderr, ratio)
	if ratio >= 2 || b100.RegretMean+3*b100.RegretStderr < ts.RegretMean-3*ts.RegretStderr {
		t.Errorf("batch 100 regret %.1f ± %.1f vs %.1f ± %.1f unbatched: want a modest change, under 2×",
			b100.RegretMean, b100.RegretStderr, ts.RegretMean, ts.RegretStderr)
	}
}

// Feedback held for the whole run leaves Thompson sampling with its prior:
// it then plays uniformly, and its regret is uniform's, 0.09 per step here.
// Feedback applied every 1000 steps must cost more than every step, and
// less than never.
//
// Tolerances (the pseudo-regret counts choices, not clicks): uniform play
// loses 0.1 with probability 0.9 per step, so over 40 × 5000 steps the
// per-step mean has standard deviation 6.7e-5 and ±0.002 is 30 of them;
// after 1000 uniform steps, 90 ± 3 is 20 standard deviations of 40 runs'
// mean. Over seeds 3–5, batch 1 gave 141–143 ± 5–8 and batch 1000 186–194
// ± 7–10: 4.6 standard deviations of the difference apart (one-sided
// 2e-6); never (450) is far above both.
func TestBatchDelaysLearning(t *testing.T) {
	env := Config{Rates: gapRates(10, 0.5, 0.1), Horizon: 5000, Runs: 40, Seed: 3}
	never := env
	never.Batch = env.Horizon + 1
	r := mustRun(t, never)
	if perStep := r.RegretMean / float64(env.Horizon); math.Abs(perStep-0.09) > 0.002 {
		t.Errorf("feedback never applied: regret %.4f per step, want uniform's 0.09", perStep)
	}
	b1000, b1 := env, env
	b1000.Batch = 1000
	r1000, r1 := mustRun(t, b1000), mustRun(t, b1)
	// The first 1000 steps of b1000 are uniform: 90 regret.
	if got := at(t, r1000, 1000); math.Abs(got-90) > 3 {
		t.Errorf("batch 1000: regret %.1f after the first batch, want 90 (uniform)", got)
	}
	if !(r1.RegretMean < r1000.RegretMean && r1000.RegretMean < r.RegretMean) {
		t.Errorf("regret batch 1 %.1f, batch 1000 %.1f, never %.1f: want increasing", r1.RegretMean, r1000.RegretMean, r.RegretMean)
	}
}

// When the rates swap halfway, plain Thompson sampling keeps serving the old
// winner for thousands of steps; discounting forgets it within a few
// half-lives.
//
// Tolerance: over 40 runs the regret after the change is 1120 ± 66 (one
// standard error) for plain and 127 ± 4 for discounted Thompson sampling;
// a third of plain's is 373 ± 22, 11 standard errors of the difference
// above discounted's.
func TestDiscountedThompsonRecoversAfterChange(t *testing.T) {
	const T = 20_000
	env := Config{
		Rates:   []float64{0.6, 0.4},
		Changes: []Change{{At: T / 2, Rates: []float64{0.4, 0.6}}},
		Horizon: T, Runs: 40, Seed: 1,
		Points: []int{T/2 - 1},
	}
	after := func(p Policy) float64 {
		c := env
		c.Policy = p
		r := mustRun(t, c)
		return r.RegretMean - at(t, r, T/2-1)
	}
	plain := after(Policy{Name: Thompson})
	disc := after(Policy{Name: DiscountedThompson, HalfLife: 500})
	t.Logf("regret after the change: thompson %.1f, discounted-thompson (half-life 500) %.1f", plain, disc)
	if !(disc < plain/3) {
		t.Errorf("regret after the change: discounted %.1f, plain %.1f: want discounted below a third", disc, plain)
	}
}

// Under churn, regret is measured against the best arm alive. Uniform choice
// between two arms with rates drawn from Beta(1, 1) loses E|X − Y|/2 = 1/6
// per step, whatever the churn; a learning policy loses less.
//
// Tolerance: |X − Y|/2 stays fixed while the pair lives (an arm is
// replaced every 100 steps on average), so the runs are noisy: over seeds
// 1–7 the per-step regret's standard error over 50 runs was 0.0023–0.0029
// (means 0.1636–0.1718). ±0.0135 is 4.6 of the largest: a two-sided
// normal tail of 4e-6. (It was ±0.01, 3.5 of them: 5e-4.) The learning
// policies lose at most 0.048 per step there, a third of uniform's or less.
func TestChurn(t *testing.T) {
	env := Config{
		K: 2, ArmPrior: &bandit.Prior{Alpha: 1, Beta: 1}, Churn: 0.01,
		Horizon: 10_000, Runs: 50, Seed: 1,
	}
	u := env
	u.Policy = Policy{Name: Uniform}
	ur := mustRun(t, u)
	if perStep := ur.RegretMean / float64(env.Horizon); math.Abs(perStep-1.0/6) > 0.0135 {
		t.Errorf("uniform under churn: regret %.4f per step, want 1/6", perStep)
	}
	for _, p := range []Policy{
		{Name: Thompson}, {Name: DiscountedThompson, HalfLife: 200}, {Name: UCB1}, {Name: EpsilonGreedy, Epsilon: 0.1},
	} {
		c := env
		c.Policy, c.Batch = p, 10
		r := mustRun(t, c)
		if math.IsNaN(r.RegretMean) || math.IsInf(r.RegretMean, 0) || !(r.RegretMean > 0) || !(r.RegretMean < ur.RegretMean) {
			t.Errorf("%s under churn: regret %v, want finite, positive and below uniform's %.1f", p.Name, r.RegretMean, ur.RegretMean)
		}
	}
	// Arms joining from a different prior: rates near 0.9 replace the
	// initial arms, so almost every run ends with better arms than it began.
	c := env
	c.NewArmPrior = &bandit.Prior{Alpha: 90, Beta: 10}
	c.Churn = 0.05
	if r := mustRun(t, c); !(r.RegretMean > 0) || math.IsInf(r.RegretMean, 0) {
		t.Errorf("churn with a new-arm prior: regret %v", r.RegretMean)
	}
}

func TestDeterministic(t *testing.T) {
	configs := map[string]Config{
		"thompson stationary": {Rates: gapRates(5, 0.3, 0.05), Horizon: 3000, Runs: 13, Seed: 7},
		"churn batch": {
			K: 4, ArmPrior: &bandit.Prior{Alpha: 2, Beta: 8}, Churn: 0.005, Batch: 7,
			Horizon: 3000, Runs: 13, Seed: 9, Policy: Policy{Name: DiscountedThompson, HalfLife: 300, MinShare: 0.01},
		},
		"ucb1 change": {
			Rates: []float64{0.2, 0.1}, Changes: []Change{{At: 1000, Rates: []float64{0.1, 0.3}}},
			Horizon: 3000, Runs: 13, Seed: 11, Policy: Policy{Name: UCB1},
		},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			var first *Result
			for _, workers := range []int{1, 2, 5, 1} {
				cfg.Workers = workers
				r := mustRun(t, cfg)
				if first == nil {
					first = r
					continue
				}
				if !reflect.DeepEqual(r, first) {
					t.Fatalf("%d workers: result differs from 1 worker's\n%+v\n%+v", workers, r.Checkpoints, first.Checkpoints)
				}
			}
			other := cfg
			other.Seed++
			if r := mustRun(t, other); reflect.DeepEqual(r.Curve, first.Curve) {
				t.Error("another seed gives the same curve")
			}
		})
	}
}

// Every policy's inner loop is allocation-free: a run allocates nothing once
// the runner exists.
func TestRunDoesNotAllocate(t *testing.T) {
	for _, p := range []Policy{
		{Name: Thompson, MinShare: 0.01}, {Name: Uniform}, {Name: EpsilonGreedy, Epsilon: 0.1},
		{Name: UCB1}, {Name: DiscountedThompson, HalfLife: 100},
	} {
		cfg := Config{
			Policy: p, K: 5, ArmPrior: &bandit.Prior{Alpha: 1, Beta: 3}, Churn: 0.01, Batch: 3,
			Changes: []Change{{At: 500, Rates: []float64{0.1, 0.2, 0.3, 0.4, 0.5}}},
			Horizon: 2000, Runs: 1,
		}
		points := recordPoints(cfg.Horizon, nil)
		r := newRunner(&cfg, points)
		out := make([]float64, len(points))
		if n := testing.AllocsPerRun(3, func() { r.run(context.Background(), 0, out) }); n != 0 {
			t.Errorf("%s: a run of %d steps allocates %v times", p.Name, cfg.Horizon, n)
		}
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Config{Rates: []float64{0.5, 0.4}, Horizon: 1_000_000, Runs: 100})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestResultShape(t *testing.T) {
	r := mustRun(t, Config{Rates: []float64{0.5, 0.4}, Horizon: 1234, Runs: 3, Points: []int{7, 300}})
	var ts []int
	for _, p := range r.Checkpoints {
		ts = append(ts, p.T)
	}
	if want := []int{7, 10, 20, 50, 100, 200, 300, 500, 1000, 1234}; !slices.Equal(ts, want) {
		t.Errorf("checkpoints %v, want %v", ts, want)
	}
	last := r.Checkpoints[len(r.Checkpoints)-1]
	if r.RegretMean != last.RegretMean || r.RegretStderr != last.RegretStderr || r.Horizon != 1234 || r.Runs != 3 || r.Policy != Thompson {
		t.Errorf("summary %+v does not match the last checkpoint %+v", r, last)
	}
	for i := 1; i < len(r.Curve); i++ {
		if r.Curve[i].T <= r.Curve[i-1].T || r.Curve[i].RegretMean < r.Curve[i-1].RegretMean {
			t.Fatalf("curve not increasing at %d: %+v then %+v", i, r.Curve[i-1], r.Curve[i])
		}
	}
	if r1 := mustRun(t, Config{Rates: []float64{0.5, 0.4}, Horizon: 50, Runs: 1}); r1.RegretStderr != 0 {
		t.Errorf("one run: stderr %v, want 0", r1.RegretStderr)
	}
}

func TestCheckpoints(t *testing.T) {
	tests := []struct {
		horizon int
		want    []int
	}{
		{1, []int{1}},
		{10, []int{10}},
		{11, []int{10, 11}},
		{150, []int{10, 20, 50, 100, 150}},
		{100_000, []int{10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000}},
	}
	for _, tt := range tests {
		if got := Checkpoints(tt.horizon); !slices.Equal(got, tt.want) {
			t.Errorf("Checkpoints(%d) = %v, want %v", tt.horizon, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Rates: []float64{0.5, 0.4}, Horizon: 10, Runs: 1}
	beta := &bandit.Prior{Alpha: 1, Beta: 1}
	tests := []struct {
		name string
		edit func(c *Config)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"valid arm prior", func(c *Config) { c.Rates, c.K, c.ArmPrior = nil, 3, beta }, ""},
		{"valid churn", func(c *Config) { c.Churn, c.NewArmPrior = 0.1, beta }, ""},
		{"zero horizon", func(c *Config) { c.Horizon = 0 }, "horizon 0"},
		{"zero runs", func(c *Config) { c.Runs = 0 }, "runs 0"},
		{"negative batch", func(c *Config) { c.Batch = -1 }, "batch -1"},
		{"no arms", func(c *Config) { c.Rates = []float64{} }, "no arms"},
		{"rate above 1", func(c *Config) { c.Rates = []float64{1.5, 0.2} }, "arm 1 rate 1.5"},
		{"NaN rate", func(c *Config) { c.Rates = []float64{0.2, math.NaN()} }, "arm 2 rate NaN"},
		{"K mismatch", func(c *Config) { c.K = 3 }, "2 rates for 3 arms"},
		{"rates and arm prior", func(c *Config) { c.ArmPrior = beta }, "both fixed rates and an arm prior"},
		{"neither", func(c *Config) { c.Rates, c.K = nil, 3 }, "neither rates nor an arm prior"},
		{"bad arm prior", func(c *Config) { c.Rates, c.K, c.ArmPrior = nil, 3, &bandit.Prior{Alpha: 0, Beta: 1} }, "arm prior Beta(0, 1)"},
		{"churn without prior", func(c *Config) { c.Churn = 0.1 }, "churn needs a new-arm prior"},
		{"churn above 1", func(c *Config) { c.Churn = 2 }, "churn 2"},
		{"change beyond horizon", func(c *Config) { c.Changes = []Change{{At: 11, Rates: []float64{0.1, 0.2}}} }, "change 1 at step 11"},
		{"changes out of order", func(c *Config) {
			c.Changes = []Change{{At: 5, Rates: []float64{0.1, 0.2}}, {At: 5, Rates: []float64{0.1, 0.2}}}
		}, "change 2 at step 5"},
		{"change rate count", func(c *Config) { c.Changes = []Change{{At: 5, Rates: []float64{0.1}}} }, "1 rates for 2 arms"},
		{"point beyond horizon", func(c *Config) { c.Points = []int{11} }, "point 11"},
		{"unknown policy", func(c *Config) { c.Policy.Name = "greedy" }, `unknown policy "greedy"`},
		{"discounted without half-life", func(c *Config) { c.Policy.Name = DiscountedThompson }, "needs a half-life"},
		{"min-share above 1", func(c *Config) { c.Policy.MinShare = 1.5 }, "min-share 1.5"},
		{"negative epsilon", func(c *Config) { c.Policy.Epsilon = -0.1 }, "epsilon -0.1"},
		{"negative prior", func(c *Config) { c.Policy.Prior.Alpha = -1 }, "prior alpha -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.Rates = slices.Clone(ok.Rates)
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Validate: nil, want an error with %q", tt.want)
			case tt.want != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want ErrConfig with %q", err, tt.want)
			}
			if err != nil {
				if _, rerr := Run(context.Background(), c); !errors.Is(rerr, ErrConfig) {
					t.Errorf("Run of an invalid config: %v, want ErrConfig", rerr)
				}
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	if got, want := DescribeRates(gapRates(10, 0.5, 0.1)), "0.5, 0.4 ×9"; got != want {
		t.Errorf("DescribeRates = %q, want %q", got, want)
	}
	c := Config{K: 3, ArmPrior: &bandit.Prior{Alpha: 1, Beta: 9}, Churn: 0.01, Batch: 10}
	want := "3 arms, rates ~ Beta(1, 9) per run; churn 0.01 per step, new arms ~ Beta(1, 9); feedback every 10 steps"
	if got := c.Environment(); got != want {
		t.Errorf("Environment = %q, want %q", got, want)
	}
}

// BenchmarkThompsonTenArms measures the simulator's speed on one core:
// Thompson sampling over 10 arms (the issue asks for 1e6 steps in well
// under 2 s).
func BenchmarkThompsonTenArms(b *testing.B) {
	for _, p := range []Policy{{Name: Thompson}, {Name: DiscountedThompson, HalfLife: 1000}, {Name: UCB1}} {
		b.Run(p.Name, func(b *testing.B) {
			cfg := Config{Policy: p, Rates: gapRates(10, 0.5, 0.1), Horizon: 100_000, Runs: 1}
			points := recordPoints(cfg.Horizon, nil)
			r := newRunner(&cfg, points)
			out := make([]float64, len(points))
			b.ReportAllocs()
			for b.Loop() {
				r.run(context.Background(), 0, out)
			}
			b.ReportMetric(float64(b.N)*float64(cfg.Horizon)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}

// valueReward has mean p over a uniform u, and stays in [0, 1].
func TestValueRewardMean(t *testing.T) {
	const n = 200000
	for _, p := range []float64{0, 0.02, 0.3, 0.5, 0.9, 1} {
		sum := 0.0
		for i := range n {
			r := valueReward((float64(i)+0.5)/n, p)
			if r < 0 || r > 1 {
				t.Fatalf("p %g: reward %g outside [0, 1]", p, r)
			}
			sum += r
		}
		if got := sum / n; math.Abs(got-p) > 1e-3 {
			t.Errorf("p %g: mean reward %g", p, got)
		}
	}
}

// In a value world (rewards in [0, 1], the gateway's fractional
// successes) Thompson sampling learns as it does from clicks: its regret
// is far below uniform's, and no more than with clicks of the same means,
// since these rewards are less noisy than clicks.
func TestValueWorld(t *testing.T) {
	env := Config{Rates: gapRates(10, 0.5, 0.1), Horizon: 20_000, Runs: 20, Seed: 7}
	run := func(name string, value bool) *Result {
		c := env
		c.Policy.Name, c.Value = name, value
		return mustRun(t, c)
	}
	tv, tc, uv := run(Thompson, true), run(Thompson, false), run(Uniform, true)
	t.Logf("value world: thompson %.1f ± %.1f, uniform %.1f ± %.1f; clicks: thompson %.1f ± %.1f",
		tv.RegretMean, tv.RegretStderr, uv.RegretMean, uv.RegretStderr, tc.RegretMean, tc.RegretStderr)
	if !(tv.RegretMean < uv.RegretMean/5) {
		t.Errorf("thompson %.1f not far below uniform %.1f in a value world", tv.RegretMean, uv.RegretMean)
	}
	if tv.RegretMean > tc.RegretMean+3*(tv.RegretStderr+tc.RegretStderr) {
		t.Errorf("thompson with value rewards %.1f ± %.1f, with clicks %.1f ± %.1f", tv.RegretMean, tv.RegretStderr, tc.RegretMean, tc.RegretStderr)
	}
}
