package bandit

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

func TestSampleBetaMoments(t *testing.T) {
	tests := []struct {
		a, b float64
		// checkVar is false for posteriors so skewed that the sample
		// variance of 2e4 draws is itself too noisy to test.
		checkVar bool
	}{
		{1, 1, true},
		{2, 5, true},
		{0.5, 0.5, true},
		{0.3, 3, true},
		{97, 1105, true},
		{0.001, 0.001, true},
		{1e-5, 1e-5, true},
		{0.001, 1, false},
		{0.001, 1000, false},
		{1e-5, 0.5, false},
		{1e7 + 1, 9e7 + 1, true}, // 1e8 trials
		{101, 1e8 - 99, true},    // a rare event over 1e8 trials
		{5e18, 5e18, true},       // counts near uint64's limit
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
			if tol := 5 * math.Sqrt(variance/n); math.Abs(gotMean-mean) > tol {
				t.Errorf("Beta(%g, %g): mean %.6g, want %.6g ± %.2g", tt.a, tt.b, gotMean, mean, tol)
			}
			if tt.checkVar && math.Abs(gotVar/variance-1) > 0.05 {
				t.Errorf("Beta(%g, %g): variance %.6g, want %.6g", tt.a, tt.b, gotVar, variance)
			}
		})
	}
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
