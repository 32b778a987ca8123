package bandit

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// The sample mean and variance of n draws must match Beta(a, b)'s. Each
// check's tolerance is set so that a correct sampler fails it with
// probability below 1e-6, so the 26 checks together below 1e-4 for any seed.
// Both are means of n independent values in [0, 1]: x, and y = (x − μ)²,
// whose variance is (κ + 2)·σ⁴ (κ the excess kurtosis).
//   - Where a, b ≥ 10 the draws are nearly normal (skewness < 2/√10), and
//     so are x̄ and ȳ over 2e4 draws, far beyond 5.3 standard deviations:
//     the tolerance is 5.3 of them (two-sided normal tail 1.2e-7). This
//     keeps the cases with 1e8 and 1e19 trials sharp.
//   - Otherwise no normal approximation: with a = 0.001, b = 1 a few dozen
//     draws far from 0 carry the mean. Bernstein's inequality for values in
//     [0, 1] with variance v, P(|mean − E| > t) ≤ 2·exp(−n·t²/(2v + 2t/3)),
//     solved for t at 1e-6. The variance is left unchecked where that
//     tolerance exceeds half of it (20000 draws cannot tell).
func bernsteinOrNormal(a, b float64, n int, v float64) float64 {
	if a >= 10 && b >= 10 {
		return 5.3 * math.Sqrt(v/float64(n))
	}
	return bernstein(n, v, 1e-6)
}

// Tolerances: see bernsteinOrNormal.
func TestSampleBetaMoments(t *testing.T) {
	tests := []struct{ a, b float64 }{
		{1, 1},
		{2, 5},
		{0.5, 0.5},
		{0.3, 3},
		{97, 1105},
		{0.001, 0.001},
		{1e-5, 1e-5},
		{0.001, 1},
		{0.001, 1000},
		{1e-5, 0.5},
		{1e7 + 1, 9e7 + 1}, // 1e8 trials
		{101, 1e8 - 99},    // a rare event over 1e8 trials
		{5e18, 5e18},       // counts near uint64's limit
	}
	const n = 20000
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			r := newRand(11)
			mean := tt.a / (tt.a + tt.b)
			variance := mean * (tt.b / (tt.a + tt.b)) / (tt.a + tt.b + 1)
			var sum, sum2 float64
			for range n {
				x := SampleBeta(r, tt.a, tt.b)
				if !(x >= 0 && x <= 1) {
					t.Fatalf("Beta(%g, %g) drew %v", tt.a, tt.b, x)
				}
				sum += x
				// Squares around the known mean: Σx² − n·mean² would
				// cancel to nothing at 1e19 trials.
				sum2 += (x - mean) * (x - mean)
			}
			gotMean := sum / n
			gotVar := sum2 / n
			if tol := bernsteinOrNormal(tt.a, tt.b, n, variance); math.Abs(gotMean-mean) > tol {
				t.Errorf("Beta(%g, %g): mean %.6g, want %.6g ± %.2g", tt.a, tt.b, gotMean, mean, tol)
			}
			varY := (betaExcessKurtosis(tt.a, tt.b) + 2) * variance * variance
			if varTol := bernsteinOrNormal(tt.a, tt.b, n, varY) / variance; varTol < 0.5 && math.Abs(gotVar/variance-1) > varTol {
				t.Errorf("Beta(%g, %g): variance %.6g, want %.6g ± %.1f%%", tt.a, tt.b, gotVar, variance, 100*varTol)
			}
		})
	}
}

// bernstein is the t with 2·exp(−n·t²/(2·variance + 2t/3)) = delta: the
// deviation of the mean of n independent draws in [0, 1] exceeded with
// probability at most delta.
func bernstein(n int, variance, delta float64) float64 {
	l := math.Log(2 / delta)
	nf := float64(n)
	return (2*l/3 + math.Sqrt(4*l*l/9+8*nf*variance*l)) / (2 * nf)
}

// betaExcessKurtosis is Beta(a, b)'s excess kurtosis.
func betaExcessKurtosis(a, b float64) float64 {
	return 6 * ((a-b)*(a-b)*(a+b+1) - a*b*(a+b+2)) / (a * b * (a + b + 2) * (a + b + 3))
}

func TestSampleBetaDegenerate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		a, b, want float64
	}{
		{0, 1, 0},
		{-3, 1, 0},
		{1, 0, 1},
		{1, -inf, 1},
		{inf, 1, 1},
		{1, inf, 0},
		{0, inf, 0},
		{inf, 0, 1},
		{0, 0, 0.5},
		{inf, inf, 0.5},
		{nan, 1, 0.5},
		{1, nan, 0.5},
	}
	r := newRand(12)
	for _, tt := range tests {
		if got := SampleBeta(r, tt.a, tt.b); got != tt.want {
			t.Errorf("SampleBeta(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := BetaQuantile(tt.a, tt.b, 0.3); got != tt.want {
			t.Errorf("BetaQuantile(%v, %v, 0.3) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSampleBetaNeverNaN(t *testing.T) {
	shapes := []float64{5e-324, 1e-310, 1e-300, 1e-100, 1e-5, 0.001, 0.5, 1, 1.5, 1e3, 1e8, 1e19, 1e300, math.MaxFloat64}
	r := newRand(13)
	for _, a := range shapes {
		for _, b := range shapes {
			for range 50 {
				if x := SampleBeta(r, a, b); !(x >= 0 && x <= 1) {
					t.Fatalf("SampleBeta(%g, %g) = %v", a, b, x)
				}
			}
		}
	}
}

func TestBetaQuantile(t *testing.T) {
	tests := []struct {
		name    string
		a, b, p float64
		want    float64
		relTol  float64
	}{
		{"uniform", 1, 1, 0.3, 0.3, 1e-9},
		{"Beta(1,n) closed form", 1, 50, 0.975, 1 - math.Pow(0.025, 1.0/50), 1e-9},
		{"Beta(a,1) closed form", 3, 1, 0.025, math.Pow(0.025, 1.0/3), 1e-9},
		{"p=0", 5, 7, 0, 0, 0},
		{"p=1", 5, 7, 1, 1, 0},
		{"p clamped", 5, 7, 2, 1, 0},
		// Above 1e6 total: normal approximation, 1e8 trials at 10%.
		{"1e8 trials low", 1e7 + 1, 9e7 + 1, 0.025, 0.1 - 1.959964*math.Sqrt(0.09/1e8), 1e-6},
		{"1e8 trials high", 1e7 + 1, 9e7 + 1, 0.975, 0.1 + 1.959964*math.Sqrt(0.09/1e8), 1e-6},
		// Above 1e6 total with a small side: Gamma(4) quantiles 1.0899 and
		// 8.7673 (to 5 digits), over 1e8.
		{"rare event low", 4, 1e8, 0.025, 1.08987e-8, 1e-4},
		{"rare event high", 4, 1e8, 0.975, 8.76727e-8, 1e-4},
		{"rare failure high", 1e8, 4, 0.975, 1 - 1.08987e-8, 1e-12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BetaQuantile(tt.a, tt.b, tt.p)
			if d := math.Abs(got - tt.want); d > tt.relTol*math.Abs(tt.want) {
				t.Errorf("BetaQuantile(%g, %g, %g) = %.10g, want %.10g", tt.a, tt.b, tt.p, got, tt.want)
			}
		})
	}
	if !math.IsNaN(BetaQuantile(2, 3, math.NaN())) {
		t.Error("BetaQuantile with NaN p is not NaN")
	}
}

// TestBetaQuantileRegimesAgree checks that the approximations above 1e6
// total trials join the exact inversion without a visible step, so an
// interval does not jump when an arm crosses the threshold.
func TestBetaQuantileRegimesAgree(t *testing.T) {
	for _, rate := range []float64{0.5, 0.1, 0.02, 0.005, 1e-4, 1e-5, 0.9999} {
		for _, p := range []float64{0.025, 0.5, 0.975} {
			n := quadratureLimit * 1.0001 // just inside the approximations
			a, b := rate*n, (1-rate)*n
			exact := distuv.Beta{Alpha: a, Beta: b}.Quantile(p)
			got := BetaQuantile(a, b, p)
			sd := math.Sqrt(a * b / (n * n * (n + 1)))
			if math.Abs(got-exact) > 0.02*sd {
				t.Errorf("rate %g, p %g: BetaQuantile %.10g, exact %.10g (%.3f sd off)", rate, p, got, exact, (got-exact)/sd)
			}
		}
	}
}

func TestBetaQuantileInRangeAndMonotone(t *testing.T) {
	shapes := []float64{1e-300, 1e-5, 0.5, 1, 30, 1e4, 2e4, 1e6, 1e8, 1e19}
	for _, a := range shapes {
		for _, b := range shapes {
			prev := -1.0
			for _, p := range []float64{0, 0.001, 0.025, 0.5, 0.975, 0.999, 1} {
				q := BetaQuantile(a, b, p)
				if !(q >= 0 && q <= 1) || q < prev {
					t.Errorf("BetaQuantile(%g, %g, %g) = %v after %v", a, b, p, q, prev)
				}
				prev = q
			}
		}
	}
}

func BenchmarkSampleBeta(b *testing.B) {
	r := newRand(1)
	b.ReportAllocs()
	for b.Loop() {
		SampleBeta(r, 961, 11041)
	}
}
