package bandit

import (
	"math"
	"math/rand/v2"
	"testing"
)

// newRand is the tests' random source: a fixed seed, so a run is
// reproducible. Every statistical tolerance below is derived so that a
// correct implementation fails with probability below 1e-4 for any seed
// (checked with 20 other seeds), not tuned to this one.
//
// Shares of n draws are binomial. "kσ" below is k·√(p(1−p)/n); the
// two-sided normal tail is 5.7e-7 at 5σ and 2e-9 at 6σ. Where np ≥ 300 the
// normal approximation holds there; where it is in doubt the comment gives
// Bernstein's inequality, P(|p̂ − p| > t) ≤ 2·exp(−n·t²/(2p(1−p) + 2t/3)),
// which needs none.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed))
}

// counts returns how often Choose picked each arm (index len(arms) counts -1).
func counts(p *Policy, r Source, arms []Arm, n int) []int {
	c := make([]int, len(arms)+1)
	for range n {
		i := p.Choose(r, arms)
		if i < 0 {
			c[len(arms)]++
			continue
		}
		c[i]++
	}
	return c
}

func TestChooseNeverPicksPausedArms(t *testing.T) {
	policies := map[string]*Policy{
		"thompson":       {},
		"thompson floor": {MinShare: 0.1},
		"full floor":     {MinShare: 1},
		"uniform":        {Kind: Uniform},
		"nil":            nil,
	}
	tests := []struct {
		name string
		arms []Arm
		want []bool // which indices may be chosen; nil = only -1
	}{
		{"no arms", nil, nil},
		{"all paused", []Arm{{Trials: 10, Successes: 9}, {}}, nil},
		{"paused best arm", []Arm{
			{Trials: 1000, Successes: 900},
			{Trials: 1000, Successes: 10, Active: true},
			{Trials: 1000, Successes: 20, Active: true},
		}, []bool{false, true, true}},
		{"single active", []Arm{{}, {Active: true}, {Trials: 5, Successes: 5}}, []bool{false, true, false}},
		{"paused in the middle", []Arm{
			{Active: true}, {Trials: 50, Successes: 49}, {Active: true}, {}, {Active: true},
		}, []bool{true, false, true, false, true}},
	}
	for pname, p := range policies {
		for _, tt := range tests {
			t.Run(pname+"/"+tt.name, func(t *testing.T) {
				c := counts(p, newRand(1), tt.arms, 2000)
				for i, n := range c[:len(tt.arms)] {
					if n > 0 && (tt.want == nil || !tt.want[i]) {
						t.Errorf("arm %d chosen %d times, must never be", i, n)
					}
					// The least likely active arm here (10 of 1000 against 20
					// of 1000) is still picked with probability about 0.04:
					// never in 2000 draws has probability 0.96^2000 < 1e-35.
					if n == 0 && tt.want != nil && tt.want[i] {
						t.Errorf("active arm %d never chosen in 2000 requests", i)
					}
				}
				if none := c[len(tt.arms)]; (tt.want == nil) != (none == 2000) {
					t.Errorf("Choose returned -1 %d of 2000 times", none)
				}
			})
		}
	}
}

func TestMinShareFloor(t *testing.T) {
	arms := []Arm{
		{Trials: 10000, Successes: 2000, Active: true}, // clearly best
		{Trials: 10000, Successes: 500, Active: true},
		{Trials: 10000, Successes: 100, Active: true},
		{Trials: 10000, Successes: 9000}, // paused: floor is per active arm
	}
	tests := []struct {
		name     string
		minShare float64
		want     []float64 // expected shares for arms 1 and 2 (exact: they never win)
	}{
		{"1%", 0.01, []float64{0.01, 0.01}},
		{"5%", 0.05, []float64{0.05, 0.05}},
		{"floor above 1/K is uniform", 0.5, []float64{1.0 / 3, 1.0 / 3}},
	}
	const n = 100000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{MinShare: tt.minShare}
			c := counts(p, newRand(2), arms, n)
			for i, want := range tt.want {
				got := float64(c[i+1]) / n
				// 5σ; at p = 0.01, n = 1e5, Bernstein bounds the
				// miss by 1.4e-5 per check, 8.4e-5 for the 6 checks.
				tol := 5 * math.Sqrt(want*(1-want)/n)
				if got < tt.minShare-tol && tt.minShare*3 <= 1 {
					t.Errorf("arm %d share %.4f below floor %.4f", i+1, got, tt.minShare)
				}
				if math.Abs(got-want) > tol {
					t.Errorf("arm %d share %.4f, want %.4f ± %.4f", i+1, got, want, tol)
				}
			}
			if c[3] != 0 {
				t.Errorf("paused arm chosen %d times", c[3])
			}
		})
	}
}

func TestUniformSplitsEvenly(t *testing.T) {
	arms := []Arm{
		{Trials: 1000, Successes: 900, Active: true},
		{Trials: 1000, Successes: 1, Active: true},
		{Active: true},
		{Trials: 1000, Successes: 1000}, // paused
	}
	// Uniform ignores MinShare and the counters.
	p := &Policy{Kind: Uniform, MinShare: 0.2}
	const n = 90000
	c := counts(p, newRand(3), arms, n)
	// 5σ: 3 checks, Bernstein ≤ 2.6e-5 together.
	tol := 5 * math.Sqrt(1.0/3*2.0/3/n)
	for i := range 3 {
		if got := float64(c[i]) / n; math.Abs(got-1.0/3) > tol {
			t.Errorf("arm %d share %.4f, want 1/3 ± %.4f", i, got, tol)
		}
	}
	if c[3] != 0 {
		t.Errorf("paused arm chosen %d times", c[3])
	}
}

func TestThompsonPrefersBetterArm(t *testing.T) {
	tests := []struct {
		name string
		arms []Arm
		best int
		min  float64
	}{
		{"10% vs 5%", []Arm{
			{Trials: 1000, Successes: 50, Active: true},
			{Trials: 1000, Successes: 100, Active: true},
		}, 1, 0.9},
		{"four arms", []Arm{
			{Trials: 2000, Successes: 100, Active: true},
			{Trials: 2000, Successes: 120, Active: true},
			{Trials: 2000, Successes: 200, Active: true},
			{Trials: 2000, Successes: 110, Active: true},
		}, 2, 0.9},
		{"1e8 trials, 10.1% vs 10%", []Arm{
			{Trials: 1e8, Successes: 1e7, Active: true},
			{Trials: 1e8, Successes: 1.01e7, Active: true},
		}, 1, 0.985}, // at most 0.99: the 1% floor
		{"corrupt counts clamp to 100%", []Arm{
			{Trials: 1000, Successes: 5000, Active: true},
			{Trials: 1000, Successes: 500, Active: true},
		}, 0, 0.985},
	}
	// The best arm's expected share is above 0.99 in each case: its
	// posterior lies more than 4 standard deviations above the others', so
	// it wins P(best) > 0.99 of the Thompson draws, and the 1% floor takes
	// at most 0.01. With n = 10000 the threshold is 10σ below (0.9) or, for
	// the two cases at 0.985, 5σ below (Bernstein: < 2.2e-5 each).
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 10000
			c := counts(&Policy{MinShare: 0.01}, newRand(4), tt.arms, n)
			if got := float64(c[tt.best]) / n; got < tt.min {
				t.Errorf("best arm served %.3f of requests, want > %.2f (counts %v)", got, tt.min, c)
			}
		})
	}
}

func TestTiesBrokenUniformly(t *testing.T) {
	// With a tiny prior and no data every draw is exactly 0 or 1, so most
	// Thompson rounds are ties; arm order must not decide them.
	arms := []Arm{{Active: true}, {Active: true}, {Active: true}}
	p := &Policy{Prior: Prior{Alpha: 1e-300, Beta: 1e-300}}
	const n = 30000
	c := counts(p, newRand(5), arms, n)
	// 5σ: 3 checks, Bernstein ≤ 3e-5 together.
	tol := 5 * math.Sqrt(1.0/3*2.0/3/n)
	for i := range arms {
		if got := float64(c[i]) / n; math.Abs(got-1.0/3) > tol {
			t.Errorf("arm %d share %.4f, want 1/3 ± %.4f (counts %v)", i, got, tol, c)
		}
	}
}

func TestChooseAllocatesNothing(t *testing.T) {
	arms := []Arm{
		{Trials: 12000, Successes: 960, Active: true},
		{Trials: 8000, Successes: 700, Active: true},
		{Trials: 300, Successes: 20, Active: true},
		{Trials: 10, Successes: 0, Active: true},
	}
	r := newRand(6)
	for _, p := range []*Policy{{}, {MinShare: 0.05}, {Kind: Uniform}, {Prior: Prior{0.5, 0.5}}} {
		if a := testing.AllocsPerRun(1000, func() { p.Choose(r, arms) }); a != 0 {
			t.Errorf("%+v: Choose allocates %v times per call, want 0", *p, a)
		}
	}
}

func TestShares(t *testing.T) {
	arms := []Arm{
		{Trials: 1000, Successes: 100, Active: true},
		{Trials: 1000, Successes: 90, Active: true},
		{Trials: 1000, Successes: 200}, // paused
		{Trials: 100, Successes: 9, Active: true},
	}
	tests := []struct {
		name   string
		policy *Policy
		exact  []float64 // nil: compare with Choose's empirical frequencies
	}{
		{"thompson", &Policy{}, nil},
		{"thompson floor", &Policy{MinShare: 0.1}, nil},
		{"full floor", &Policy{MinShare: 0.5}, []float64{1.0 / 3, 1.0 / 3, 0, 1.0 / 3}},
		{"uniform", &Policy{Kind: Uniform}, []float64{1.0 / 3, 1.0 / 3, 0, 1.0 / 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]float64, len(arms)+1)
			out[len(arms)] = 42 // beyond len(arms): untouched
			tt.policy.Shares(newRand(7), arms, 20000, out)
			sum := 0.0
			for _, s := range out[:len(arms)] {
				sum += s
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Errorf("shares %v sum to %v, want 1", out, sum)
			}
			if out[2] != 0 {
				t.Errorf("paused arm share %v, want 0", out[2])
			}
			if out[len(arms)] != 42 {
				t.Errorf("Shares wrote beyond len(arms)")
			}
			if tt.exact != nil {
				for i, want := range tt.exact {
					if math.Abs(out[i]-want) > 1e-12 {
						t.Errorf("share[%d] = %v, want exactly %v", i, out[i], want)
					}
				}
				return
			}
			if m := tt.policy.MinShare; m > 0 {
				for _, i := range []int{0, 1, 3} {
					if out[i] < m {
						t.Errorf("share[%d] = %v below floor %v", i, out[i], m)
					}
				}
			}
			const n = 20000
			c := counts(tt.policy, newRand(8), arms, n)
			for i := range arms {
				got := float64(c[i]) / n
				// Both are estimates from 20000 draws: their difference has
				// standard deviation at most √(2·0.25/n) = 0.005, and 7σ of
				// one estimate is 4.95 of that: two-sided 7.4e-7 per check,
				// 6 checks. (6σ, 4.24 of it, would miss 1.3e-4 of the time.)
				if tol := 7 * math.Sqrt(0.25/n); math.Abs(got-out[i]) > tol {
					t.Errorf("arm %d: Shares says %.4f, Choose picks it %.4f", i, out[i], got)
				}
			}
		})
	}
	t.Run("edge cases", func(t *testing.T) {
		out := []float64{7, 7}
		(&Policy{}).Shares(newRand(9), []Arm{{}, {}}, 100, out)
		if out[0] != 0 || out[1] != 0 {
			t.Errorf("no active arm: shares %v, want zeros", out)
		}
		(&Policy{}).Shares(newRand(9), []Arm{{}, {Active: true}}, 0, out)
		if out[0] != 0 || out[1] != 1 {
			t.Errorf("one active arm: shares %v, want [0 1]", out)
		}
		var nilPolicy *Policy
		nilPolicy.Shares(newRand(9), []Arm{{Active: true}, {Active: true}}, 0, out)
		if math.Abs(out[0]+out[1]-1) > 1e-12 || math.Abs(out[0]-0.5) > 0.05 {
			t.Errorf("identical arms, default draws: shares %v, want about [0.5 0.5]", out)
		}
	})
}

func TestPriorDefaults(t *testing.T) {
	tests := []struct {
		prior      Prior
		arm        Arm
		alpha, bet float64
	}{
		{Prior{}, Arm{}, 1, 1},
		{Prior{}, Arm{Trials: 10, Successes: 3}, 4, 8},
		{Prior{Alpha: 2, Beta: 0}, Arm{Trials: 10, Successes: 3}, 5, 8},
		{Prior{Alpha: math.NaN(), Beta: math.Inf(1)}, Arm{}, 1, 1},
		{Prior{Alpha: -1, Beta: 0.5}, Arm{Trials: 1, Successes: 1}, 2, 0.5},
		{Prior{}, Arm{Trials: 10, Successes: 30}, 11, 1}, // clamped
		{Prior{}, Arm{Trials: 1e8, Successes: 1e6}, 1e6 + 1, 99e6 + 1},
	}
	for _, tt := range tests {
		a, b := tt.prior.Posterior(tt.arm)
		if a != tt.alpha || b != tt.bet {
			t.Errorf("%+v.Posterior(%+v) = (%v, %v), want (%v, %v)", tt.prior, tt.arm, a, b, tt.alpha, tt.bet)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Thompson: "thompson", Uniform: "uniform", 7: "Kind(7)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func BenchmarkChoose4Arms(b *testing.B) {
	arms := []Arm{
		{Trials: 12000, Successes: 960, Active: true},
		{Trials: 8000, Successes: 700, Active: true},
		{Trials: 300, Successes: 20, Active: true},
		{Trials: 10, Successes: 0, Active: true},
	}
	p := &Policy{MinShare: 0.01}
	r := newRand(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Choose(r, arms)
	}
}

func BenchmarkShares4Arms(b *testing.B) {
	arms := []Arm{
		{Trials: 12000, Successes: 960, Active: true},
		{Trials: 8000, Successes: 700, Active: true},
		{Trials: 300, Successes: 20, Active: true},
		{Trials: 10, Successes: 0, Active: true},
	}
	p := &Policy{MinShare: 0.01}
	r := newRand(1)
	out := make([]float64, len(arms))
	b.ReportAllocs()
	for b.Loop() {
		p.Shares(r, arms, DefaultDraws, out)
	}
}
