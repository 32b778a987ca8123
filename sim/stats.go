package sim

import (
	"math"
	"slices"
)

// BernoulliKL returns the Kullback–Leibler divergence KL(p‖q) between
// Bernoulli(p) and Bernoulli(q), in nats: p ln(p/q) + (1−p) ln((1−p)/(1−q)),
// with 0 ln 0 = 0. It is +Inf when q puts zero mass where p does not.
func BernoulliKL(p, q float64) float64 {
	return xlogxy(p, q) + xlogxy(1-p, 1-q)
}

// xlogxy returns x ln(x/y) with 0 ln(0/y) = 0.
func xlogxy(x, y float64) float64 {
	if x == 0 {
		return 0
	}
	if y == 0 {
		return math.Inf(1)
	}
	return x * math.Log(x/y)
}

// LaiRobbinsNote says what C·ln t is, wherever it is printed next to regrets.
const LaiRobbinsNote = "asymptotic lower bound: as t → ∞ every consistent policy's expected regret is at least (C − o(1))·ln t; " +
	"not a bound at each t (at finite t a good policy may lie below C·ln t)"

// LaiRobbinsConstant returns C = Σ_{i: pᵢ < p*} (p* − pᵢ)/KL(pᵢ‖p*), p* the
// highest rate: by Lai and Robbins (1985) every consistent policy's expected
// regret on these Bernoulli arms is at least (C − o(1))·ln t as t grows. It is
// 0 when all rates are equal, and an arm that can be told apart from the best
// one by a single observation (p* = 1) contributes 0.
//
// The bound is asymptotic: at finite t a good policy may lie below C·ln t.
func LaiRobbinsConstant(rates []float64) float64 {
	if len(rates) == 0 {
		return 0
	}
	best := slices.Max(rates)
	var c float64
	for _, p := range rates {
		if p < best {
			c += (best - p) / BernoulliKL(p, best)
		}
	}
	return c
}

// Checkpoints returns the steps at which regret is reported by default: 10,
// 20, 50, 100, 200, 500, … below horizon, then horizon itself.
func Checkpoints(horizon int) []int {
	var ts []int
	for dec := 10; dec < horizon; dec *= 10 {
		for _, m := range []int{1, 2, 5} {
			if t := m * dec; t < horizon {
				ts = append(ts, t)
			}
		}
		if dec > math.MaxInt/10 {
			break
		}
	}
	return append(ts, horizon)
}

// Curve resolution: points per decade of the log-spaced grid, and points of
// the evenly spaced one, so that a plot looks smooth on either x axis.
const (
	curvePerDecade = 24
	curveLinear    = 200
)

// recordPoints returns the sorted, distinct steps at which each run records
// its cumulative regret: the checkpoints, extra points and a log- and an
// evenly spaced grid for plots.
func recordPoints(horizon int, extra []int) []int {
	ts := append(Checkpoints(horizon), extra...)
	for i := 0; ; i++ {
		t := int(math.Round(math.Pow(10, float64(i)/curvePerDecade)))
		if t > horizon {
			break
		}
		ts = append(ts, t)
	}
	for i := 1; i <= curveLinear; i++ {
		ts = append(ts, max(1, int(int64(horizon)*int64(i)/curveLinear)))
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}
