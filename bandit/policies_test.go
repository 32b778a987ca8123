package bandit

import (
	"math"
	"testing"
)

func TestDiscount(t *testing.T) {
	tests := []struct {
		name            string
		x, dt, halfLife float64
		want            float64
	}{
		{"one half-life halves", 8, 100, 100, 4},
		{"two half-lives quarter", 8, 200, 100, 2},
		{"per-step factor", 1, 1, 10, math.Exp2(-0.1)},
		{"no time passed", 8, 0, 100, 8},
		{"negative dt", 8, -5, 100, 8},
		{"NaN dt", 8, math.NaN(), 100, 8},
		{"zero half-life: no discounting", 8, 100, 0, 8},
		{"negative half-life", 8, 100, -1, 8},
		{"infinite half-life", 8, 100, math.Inf(1), 8},
		{"NaN half-life", 8, 100, math.NaN(), 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Discount(tt.x, tt.dt, tt.halfLife); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("Discount(%v, %v, %v) = %v, want %v", tt.x, tt.dt, tt.halfLife, got, tt.want)
			}
		})
	}
	// Lazy discounting equals discounting once per step.
	x, lazy := 10.0, 10.0
	for range 37 {
		x = Discount(x, 1, 25)
	}
	lazy = Discount(lazy, 37, 25)
	if math.Abs(x-lazy) > 1e-12 {
		t.Errorf("37 one-step discounts give %v, one 37-step discount %v", x, lazy)
	}
}

// chosen counts the choices of f over n calls (index len(arms) counts -1).
func chosen(arms []Arm, n int, f func(Source, []Arm) int) []int {
	r := newRand(3)
	c := make([]int, len(arms)+1)
	for range n {
		i := f(r, arms)
		if i < 0 {
			i = len(arms)
		}
		c[i]++
	}
	return c
}

func TestUCB1(t *testing.T) {
	ucb := func(c float64) func(Source, []Arm) int {
		return func(r Source, arms []Arm) int { return UCB1(r, arms, c) }
	}
	tests := []struct {
		name string
		c    float64
		arms []Arm
		want []int // exact counts over 1000 calls; -1 entries are not checked
	}{
		{"no active arm", 2, []Arm{{Trials: 10, Successes: 5}}, []int{0, 1000}},
		{"untried arm first", 2, []Arm{
			{Trials: 1000, Successes: 900, Active: true},
			{Active: true},
		}, []int{0, 1000, 0}},
		{"untried arms share uniformly", 2, []Arm{
			{Active: true}, {Trials: 5, Successes: 5, Active: true}, {Active: true},
		}, []int{-1, 0, -1, 0}},
		{"paused arm never served", 2, []Arm{
			{}, {Trials: 100, Successes: 10, Active: true}, {Trials: 100, Successes: 20, Active: true},
		}, []int{0, 0, 1000, 0}},
		// n = 10 vs n = 1000, means 0.5 vs 0.6: the bonus √(2 ln 1010/10) =
		// 1.18 of the rarely served arm outweighs the 0.1 difference.
		{"bonus of the rarely served arm", 2, []Arm{
			{Trials: 10, Successes: 5, Active: true},
			{Trials: 1000, Successes: 600, Active: true},
		}, []int{1000, 0, 0}},
		// With a tiny c the bonus no longer matters.
		{"small c is greedy", 1e-6, []Arm{
			{Trials: 10, Successes: 5, Active: true},
			{Trials: 1000, Successes: 600, Active: true},
		}, []int{0, 1000, 0}},
		// Discounted counts: 0.5 of 1 vs 6 of 10 in pseudo-counts.
		{"pseudo-counts", 1e-6, []Arm{
			{PseudoSuccesses: 0.5, PseudoFailures: 0.5, Active: true},
			{PseudoSuccesses: 6, PseudoFailures: 4, Active: true},
		}, []int{0, 1000, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chosen(tt.arms, 1000, ucb(tt.c))
			for i, w := range tt.want {
				if w >= 0 && got[i] != w {
					t.Errorf("counts %v, want %v", got, tt.want)
					break
				}
			}
			for i, w := range tt.want {
				if w == -1 && (got[i] < 400 || got[i] > 600) {
					t.Errorf("tied arm %d chosen %d of 1000 times, want about 500", i, got[i])
				}
			}
		})
	}
}

func TestUCB1DefaultC(t *testing.T) {
	// Means 0.5 (n 100) and 0.6 (n 10000): with c = 2 the bonus of arm 0 is
	// √(2 ln 10100/100) = 0.43 against 0.043, so arm 0 wins; c = 0.01 makes
	// arm 1 win. A bad c must mean 2.
	arms := []Arm{{Trials: 100, Successes: 50, Active: true}, {Trials: 10000, Successes: 6000, Active: true}}
	for _, c := range []float64{0, -1, math.NaN(), math.Inf(1), 2} {
		if got := UCB1(newRand(1), arms, c); got != 0 {
			t.Errorf("UCB1(c=%v) = %d, want 0 (c = 2)", c, got)
		}
	}
	if got := UCB1(newRand(1), arms, 0.01); got != 1 {
		t.Errorf("UCB1(c=0.01) = %d, want 1", got)
	}
}

func TestEpsilonGreedy(t *testing.T) {
	arms := []Arm{
		{Trials: 100, Successes: 10, Active: true},
		{Trials: 100, Successes: 30, Active: true},
		{Trials: 100, Successes: 90}, // paused
		{Trials: 100, Successes: 20, Active: true},
	}
	eg := func(eps float64) func(Source, []Arm) int {
		return func(r Source, arms []Arm) int { return EpsilonGreedy(r, arms, eps) }
	}
	const n = 30000
	for _, eps := range []float64{0, math.NaN(), -1} {
		if got := chosen(arms, n, eg(eps)); got[1] != n {
			t.Errorf("ε = %v: counts %v, want all on arm 1", eps, got)
		}
	}
	// ε = 0.3: each of 3 active arms explored with probability 0.1, the
	// greedy arm 1 also exploited: 0.7 + 0.1.
	got := chosen(arms, n, eg(0.3))
	want := []float64{0.1, 0.8, 0, 0.1, 0}
	// 0.012 is 6.9σ at p = 0.1 and 5.2σ at p = 0.8 with n = 30000; 0.015
	// below is 5.5σ at p = 1/3: two-sided below 2e-7 each.
	for i, w := range want {
		if share := float64(got[i]) / n; math.Abs(share-w) > 0.012 {
			t.Errorf("ε = 0.3: arm %d share %.3f, want %.2f (counts %v)", i, share, w, got)
		}
	}
	// ε ≥ 1 is uniform.
	got = chosen(arms, n, eg(5))
	for _, i := range []int{0, 1, 3} {
		if share := float64(got[i]) / n; math.Abs(share-1.0/3) > 0.015 {
			t.Errorf("ε = 5: arm %d share %.3f, want 1/3 (counts %v)", i, share, got)
		}
	}
	// Untried arms first, whatever the others' rates.
	fresh := []Arm{{Trials: 10, Successes: 10, Active: true}, {Active: true}}
	if got := chosen(fresh, 100, eg(0)); got[1] != 100 {
		t.Errorf("untried arm: counts %v, want all on arm 1", got)
	}
	if got := EpsilonGreedy(newRand(1), []Arm{{}, {}}, 0.5); got != -1 {
		t.Errorf("no active arm: got %d, want -1", got)
	}
	if got := EpsilonGreedy(newRand(1), []Arm{{}, {Active: true}}, 0.5); got != 1 {
		t.Errorf("one active arm: got %d, want 1", got)
	}
}

func TestPoliciesDoNotAllocate(t *testing.T) {
	arms := []Arm{
		{Trials: 12000, Successes: 960, Active: true},
		{Trials: 8000, Successes: 700, Active: true},
		{Trials: 300, Successes: 20, Active: true},
		{Active: true},
	}
	r := newRand(1)
	if n := testing.AllocsPerRun(100, func() { UCB1(r, arms, 2) }); n != 0 {
		t.Errorf("UCB1 allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { EpsilonGreedy(r, arms, 0.1) }); n != 0 {
		t.Errorf("EpsilonGreedy allocates %v times", n)
	}
}

func BenchmarkUCB1TenArms(b *testing.B) {
	arms := make([]Arm, 10)
	for i := range arms {
		arms[i] = Arm{Trials: uint64(1000 * (i + 1)), Successes: float64(400 * (i + 1)), Active: true}
	}
	r := newRand(1)
	b.ReportAllocs()
	for b.Loop() {
		UCB1(r, arms, 2)
	}
}
