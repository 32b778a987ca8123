package bandit

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// clark is E[max(X, Y)] for independent normals (Clark, 1961).
func clark(m1, s1, m2, s2 float64) float64 {
	th := math.Hypot(s1, s2)
	a := (m1 - m2) / th
	return m1*distuv.UnitNormal.CDF(a) + m2*distuv.UnitNormal.CDF(-a) + th*distuv.UnitNormal.Prob(a)
}

// monteCarloGaps estimates RegretGaps from draws, with the standard error of
// each gap.
func monteCarloGaps(prior Prior, arms []Arm, draws int) (gaps, se []float64) {
	r := rand.New(rand.NewPCG(1, 2))
	gaps, se = make([]float64, len(arms)), make([]float64, len(arms))
	sq := make([]float64, len(arms))
	theta := make([]float64, len(arms))
	for range draws {
		top := 0.0
		for i, a := range arms {
			al, be := prior.Posterior(a)
			theta[i] = SampleBeta(r, al, be)
			top = max(top, theta[i])
		}
		for i := range arms {
			gaps[i] += top - theta[i]
			sq[i] += (top - theta[i]) * (top - theta[i])
		}
	}
	n := float64(draws)
	for i := range gaps {
		gaps[i] /= n
		se[i] = math.Sqrt((sq[i]/n - gaps[i]*gaps[i]) / n)
	}
	return gaps, se
}

func TestRegretGaps(t *testing.T) {
	// Two arms of 1e8 trials each: normal posteriors, compared with Clark's
	// closed form for the max of two normals.
	big := []Arm{{Trials: 1e8, Successes: 5e6}, {Trials: 1e8, Successes: 5e6 + 2e3}}
	bigWant := func() []float64 {
		var m, s [2]float64
		for i, a := range big {
			al, be := Prior{}.Posterior(a)
			n := al + be
			m[i], s[i] = al/n, math.Sqrt(al*be/(n*n*(n+1)))
		}
		e := clark(m[0], s[0], m[1], s[1])
		return []float64{e - m[0], e - m[1]}
	}()

	tests := []struct {
		name  string
		prior Prior
		arms  []Arm
		want  []float64 // exact values; nil: compare with Monte Carlo
		tol   float64   // absolute, for want
	}{
		{"no arms", Prior{}, nil, []float64{}, 0},
		{"one arm alone has no gap", Prior{}, []Arm{{Trials: 10, Successes: 3}}, []float64{0}, 0},
		{"arms without trials are left out", Prior{}, []Arm{{Trials: 10, Successes: 3}, {}}, []float64{0, 0}, 0},
		// Two Beta(1, 2): E[max] = 7/15, E[θ] = 1/3.
		{"two Beta(1, 2)", Prior{}, []Arm{{Trials: 1}, {Trials: 1}}, []float64{2.0 / 15, 2.0 / 15}, 1e-9},
		// The paused/unused third arm changes nothing.
		{"an arm without trials is not in the max", Prior{}, []Arm{{Trials: 1}, {Trials: 1}, {Active: true}}, []float64{2.0 / 15, 2.0 / 15, 0}, 1e-9},
		{"normal regime, 1e8 trials", Prior{}, big, bigWant, 2e-9},
		{"three arms, moderate counts", Prior{}, []Arm{{Trials: 1000, Successes: 100}, {Trials: 200, Successes: 25}, {Trials: 30, Successes: 1}}, nil, 0},
		{"a rare arm against a strong one", Prior{Alpha: 0.5, Beta: 0.5}, []Arm{{Trials: 20, Successes: 0}, {Trials: 5000, Successes: 400}}, nil, 0},
		{"near-identical narrow posteriors", Prior{}, []Arm{{Trials: 500000, Successes: 50000}, {Trials: 500000, Successes: 50100}}, nil, 0},
		{"a huge arm beside a tiny one", Prior{}, []Arm{{Trials: 5e7, Successes: 1e6}, {Trials: 3, Successes: 1}}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RegretGaps(tt.prior, tt.arms)
			if len(got) != len(tt.arms) {
				t.Fatalf("%d gaps for %d arms", len(got), len(tt.arms))
			}
			for i, g := range got {
				if !(g >= 0 && g <= 1) {
					t.Errorf("arm %d: gap %v, want in [0, 1]", i, g)
				}
			}
			if tt.want != nil {
				for i, w := range tt.want {
					if math.Abs(got[i]-w) > tt.tol {
						t.Errorf("arm %d: gap %.12g, want %.12g ± %g", i, got[i], w, tt.tol)
					}
				}
				return
			}
			mc, se := monteCarloGaps(tt.prior, tt.arms, 400000)
			for i := range got {
				if d := math.Abs(got[i] - mc[i]); d > 5*se[i]+1e-9 {
					t.Errorf("arm %d: gap %.8g, Monte Carlo %.8g ± %.2g", i, got[i], mc[i], se[i])
				}
			}
		})
	}
}

// Exact gaps make the regret a function of the counts: the same counts give
// the same regret, which is what lets a history series be monotone.
func TestAnalyzeRegretIsDeterministic(t *testing.T) {
	arms := []Arm{{Trials: 900, Successes: 80, Active: true}, {Trials: 60, Successes: 3, Active: true}, {Trials: 40, Successes: 2, Active: true}}
	a := Analyze(rand.New(rand.NewPCG(1, 1)), Prior{}, arms, 10000)
	b := Analyze(rand.New(rand.NewPCG(7, 9)), Prior{}, arms, 10000)
	if a.ExpectedRegret != b.ExpectedRegret || a.ExpectedRegret <= 0 {
		t.Fatalf("regret %v and %v from different draws: want equal and positive", a.ExpectedRegret, b.ExpectedRegret)
	}
	gaps := RegretGaps(Prior{}, arms)
	sum := 0.0
	for i, g := range gaps {
		sum += float64(arms[i].Trials) * g
		if a.Arms[i].RegretGap != g {
			t.Errorf("arm %d: RegretGap %v, RegretGaps %v", i, a.Arms[i].RegretGap, g)
		}
	}
	if math.Abs(sum-a.ExpectedRegret) > 1e-9 {
		t.Errorf("ExpectedRegret %v, Σ trials·gap %v", a.ExpectedRegret, sum)
	}
}

// Ten overlapping arms: the report's worst case for quadrature (every
// panel needs every CDF). Compare with BenchmarkAnalyze's draws.
func BenchmarkRegretGaps10Arms(b *testing.B) {
	var arms []Arm
	for i := range 10 {
		arms = append(arms, Arm{Trials: uint64(1000 + 300*i), Successes: float64(50 + 20*i)})
	}
	for b.Loop() {
		RegretGaps(Prior{}, arms)
	}
}
