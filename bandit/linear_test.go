package bandit

import (
	"math"
	"testing"
)

// randomSums returns the sums of n random trials of dimension d (a constant
// 1, one-hot blocks and a numeric dimension), rewards from a hidden θ.
func randomSums(d, n int, seed uint64) []float64 {
	r := newRand(seed)
	sums := make([]float64, LinearSumsLen(d))
	x := make([]float64, d)
	for range n {
		clear(x)
		x[0] = 1
		x[1+r.IntN(d-2)] = 1
		x[d-1] = r.NormFloat64()
		AddTrial(sums, x)
		if r.Float64() < 0.3+0.1*x[d-1] {
			AddReward(sums, x, 1)
		}
	}
	return sums
}

// full returns λI + Σ xxᵀ as a dense d×d matrix.
func full(d int, lambda float64, sums []float64) [][]float64 {
	a := make([][]float64, d)
	for i := range a {
		a[i] = make([]float64, d)
	}
	up := sums[linearHeader+d:]
	k := 0
	for i := range d {
		for j := i; j < d; j++ {
			a[i][j], a[j][i] = up[k], up[k]
			k++
		}
		a[i][i] += lambda
	}
	return a
}

func TestFitLinearSolvesTheRidgeSystem(t *testing.T) {
	tests := []struct {
		name   string
		d, n   int
		lambda float64
	}{
		{"no evidence", 4, 0, 1},
		{"few trials", 6, 3, 0.5},
		{"many trials", 16, 5000, 1},
		{"largest", MaxLinearDims, 2000, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sums := randomSums(tc.d, tc.n, 7)
			arm, err := FitLinear(tc.d, tc.lambda, sums)
			if err != nil {
				t.Fatal(err)
			}
			a := full(tc.d, tc.lambda, sums)
			// A·μ = b.
			for i := range tc.d {
				s := 0.0
				for j := range tc.d {
					s += a[i][j] * arm.Mu[j]
				}
				if b := sums[linearHeader+i]; math.Abs(s-b) > 1e-8*(1+math.Abs(b)) {
					t.Fatalf("(Aμ)[%d] = %v, want b = %v", i, s, b)
				}
			}
			// ‖Wx‖² = xᵀA⁻¹x: with y = A⁻¹x, xᵀy; check A·y = x for y = WᵀWx.
			x := make([]float64, tc.d)
			for i := range x {
				x[i] = float64(i%3) - 0.5
			}
			_, sd := arm.Score(x)
			y := make([]float64, tc.d)
			wx := make([]float64, tc.d)
			row := func(i int) int { return i * (i + 1) / 2 }
			for i := range tc.d {
				for k := 0; k <= i; k++ {
					wx[i] += arm.W[row(i)+k] * x[k]
				}
			}
			for j := range tc.d {
				for i := j; i < tc.d; i++ {
					y[j] += arm.W[row(i)+j] * wx[i]
				}
			}
			quad := 0.0
			for i := range tc.d {
				s := 0.0
				for j := range tc.d {
					s += a[i][j] * y[j]
				}
				if math.Abs(s-x[i]) > 1e-8 {
					t.Fatalf("(A·WᵀWx)[%d] = %v, want %v", i, s, x[i])
				}
				quad += x[i] * y[i]
			}
			if math.Abs(sd*sd-quad) > 1e-9*(1+quad) {
				t.Fatalf("sd² = %v, want xᵀA⁻¹x = %v", sd*sd, quad)
			}
		})
	}
}

func TestFitLinearRefusesCorruptSums(t *testing.T) {
	sums := make([]float64, LinearSumsLen(3))
	sums[linearHeader+3] = -5 // A(0,0) = λ − 5 < 0
	if _, err := FitLinear(3, 1, sums); err == nil {
		t.Fatal("negative diagonal: want an error")
	}
	sums[linearHeader+3] = math.NaN()
	if _, err := FitLinear(3, 1, sums); err == nil {
		t.Fatal("NaN: want an error")
	}
	if _, err := FitLinear(MaxLinearDims+1, 1, nil); err == nil {
		t.Fatal("d > MaxLinearDims: want an error")
	}
}

func TestLinearSumsLenRoundTrips(t *testing.T) {
	for d := 1; d <= MaxLinearDims; d++ {
		if got := LinearDims(LinearSumsLen(d)); got != d {
			t.Fatalf("LinearDims(LinearSumsLen(%d)) = %d", d, got)
		}
	}
	if LinearDims(5) != -1 {
		t.Fatal("LinearDims(5): no d has 5 sums")
	}
}

// TestLinearSharesMatchChoose checks the quadrature against the choice it
// describes: the share of n = 200000 draws of LinearChoose is within 5σ
// (σ ≤ 0.0012) plus 0.03, the quadrature's own error, of LinearShares,
// floor included.
func TestLinearSharesMatchChoose(t *testing.T) {
	tests := []struct {
		name     string
		scores   []LinearScore
		minShare float64
	}{
		{"close", []LinearScore{{0.1, 0.05, true}, {0.12, 0.03, true}, {0.09, 0.1, true}, {0.11, 0.02, true}}, 0},
		{"one sure, one wide", []LinearScore{{0.5, 0.001, true}, {0.4, 0.3, true}}, 0},
		{"paused and floor", []LinearScore{{0.3, 0.1, true}, {0.9, 0.1, false}, {0.2, 0.2, true}}, 0.05},
		{"far apart", []LinearScore{{1, 0.01, true}, {0, 0.01, true}, {0.2, 0.05, true}}, 0},
		{"narrow between wide", []LinearScore{{0.5, 0.3, true}, {0.55, 0.002, true}, {0.45, 0.2, true}, {0.5, 0.1, true}}, 0},
		{"a point mass", []LinearScore{{0.2, 0, true}, {0.2, 0.1, true}}, 0},
	}
	const n = 200000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shares := make([]float64, len(tc.scores))
			LinearShares(tc.scores, tc.minShare, shares)
			sum := 0.0
			for _, s := range shares {
				sum += s
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Fatalf("shares %v sum to %v", shares, sum)
			}
			r := newRand(3)
			got := make([]float64, len(tc.scores))
			for range n {
				got[LinearChoose(r, tc.scores, tc.minShare)]++
			}
			for i := range got {
				p := shares[i]
				if !tc.scores[i].Active && (p != 0 || got[i] != 0) {
					t.Fatalf("paused arm %d: share %v, chosen %v times", i, p, got[i])
				}
				sigma := math.Sqrt(max(p*(1-p), 1e-6) / n)
				if d := math.Abs(got[i]/n - p); d > 5*sigma+0.03 {
					t.Errorf("arm %d: chosen %.4f of draws, share %.4f (5σ = %.4f)", i, got[i]/n, p, 5*sigma)
				}
			}
		})
	}
}

func TestLinearSharesEdgeCases(t *testing.T) {
	out := make([]float64, 3)
	LinearShares([]LinearScore{{}, {}, {}}, 0.1, out)
	if out[0]+out[1]+out[2] != 0 {
		t.Fatalf("no active arm: %v", out)
	}
	LinearShares([]LinearScore{{}, {Mean: 5, Active: true}, {}}, 0.1, out)
	if out[1] != 1 {
		t.Fatalf("one active arm: %v", out)
	}
	LinearShares([]LinearScore{{Active: true}, {Active: true}, {Active: true}}, 1, out)
	for _, s := range out {
		if math.Abs(s-1.0/3) > 1e-12 {
			t.Fatalf("total floor: %v", out)
		}
	}
	if r := newRand(1); LinearChoose(r, []LinearScore{{}, {}}, 0) != -1 {
		t.Fatal("LinearChoose with no active arm: want -1")
	}
}

// TestLinearThompsonLearnsWhoWinsWhere runs the policy in a world of two
// user kinds where each arm is best for one kind: after 4000 rounds it
// serves each kind its best arm most of the time, which no context-free
// policy can.
func TestLinearThompsonLearnsWhoWinsWhere(t *testing.T) {
	const d = 3                                    // constant, kind A, kind B
	rates := [2][2]float64{{0.6, 0.2}, {0.2, 0.6}} // [kind][arm]
	sums := [2][]float64{make([]float64, LinearSumsLen(d)), make([]float64, LinearSumsLen(d))}
	r := newRand(11)
	arms := make([]*LinearArm, 2)
	active := []bool{true, true}
	scores := make([]LinearScore, 2)
	right := [2]int{}
	total := [2]int{}
	for round := range 4000 {
		if round%50 == 0 {
			for i := range arms {
				a, err := FitLinear(d, 1, sums[i])
				if err != nil {
					t.Fatal(err)
				}
				arms[i] = a
			}
		}
		kind := r.IntN(2)
		x := []float64{1, 0, 0}
		x[1+kind] = 1
		LinearScores(x, 0.5, arms, active, scores)
		i := LinearChoose(r, scores, 0)
		AddTrial(sums[i], x)
		if r.Float64() < rates[kind][i] {
			AddReward(sums[i], x, 1)
		}
		if round >= 3000 {
			total[kind]++
			if i == kind {
				right[kind]++
			}
		}
	}
	for k := range 2 {
		if share := float64(right[k]) / float64(total[k]); share < 0.85 {
			t.Errorf("kind %d served its best arm %.2f of the last rounds, want ≥ 0.85", k, share)
		}
	}
}

// benchArms fits 4 arms of d = 16 from random sums, and a request's x.
func benchArms(b *testing.B) ([]*LinearArm, []float64) {
	const d = 16
	arms := make([]*LinearArm, 4)
	for i := range arms {
		a, err := FitLinear(d, 1, randomSums(d, 10000, uint64(i+1)))
		if err != nil {
			b.Fatal(err)
		}
		arms[i] = a
	}
	x := make([]float64, d)
	x[0], x[3], x[9], x[15] = 1, 1, 1, 0.7
	return arms, x
}

// BenchmarkLinearChoose4ArmsD16 is the draw of linear Thompson sampling:
// scores of 4 arms at d = 16, then one normal per arm.
func BenchmarkLinearChoose4ArmsD16(b *testing.B) {
	arms, x := benchArms(b)
	active := []bool{true, true, true, true}
	scores := make([]LinearScore, len(arms))
	r := newRand(1)
	b.ReportAllocs()
	for b.Loop() {
		LinearScores(x, 0.5, arms, active, scores)
		LinearChoose(r, scores, 0.01)
	}
}

// BenchmarkLinearSharesPick4ArmsD16 is what the router does per request:
// scores, every arm's propensity by quadrature, and a pick from them.
func BenchmarkLinearSharesPick4ArmsD16(b *testing.B) {
	arms, x := benchArms(b)
	active := []bool{true, true, true, true}
	scores := make([]LinearScore, len(arms))
	shares := make([]float64, len(arms))
	r := newRand(1)
	b.ReportAllocs()
	for b.Loop() {
		LinearScores(x, 0.5, arms, active, scores)
		LinearShares(scores, 0.01, shares)
		Pick(r, shares)
	}
}

func BenchmarkFitLinearD16(b *testing.B) {
	sums := randomSums(16, 10000, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FitLinear(16, 1, sums); err != nil {
			b.Fatal(err)
		}
	}
}
