package bandit

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Shapes are clamped into [minShape, maxShape] before sampling. Below
// minShape 1/shape could overflow and turn a log-space draw into NaN; above
// maxShape the two Gamma draws could sum to +Inf. Neither clamp changes a
// result representable in float64.
const (
	minShape = 1e-300
	maxShape = 1e300
)

// SampleBeta returns one draw from Beta(a, b), using r for randomness.
//
// It draws X ~ Gamma(a) and Y ~ Gamma(b) with Marsaglia and Tsang's method and
// returns X / (X + Y). A shape below 1 uses the boost Gamma(s) = Gamma(s+1) ·
// U^(1/s), computed in log space: for tiny shapes such as 1e-5 the Gamma
// draws themselves underflow, but their ratio does not, so the result is
// exact where float64 can represent it and exactly 0 or 1 where the true draw
// is closer to 0 or 1 than any float64.
//
// The result is always in [0, 1], never NaN. Degenerate or invalid shapes give
// the distribution's limit instead of failing: a ≤ 0 or b = +Inf gives 0,
// b ≤ 0 or a = +Inf gives 1; when those disagree (both ≤ 0, both +Inf) or a
// shape is NaN, it returns 0.5. It does not allocate and is safe for
// concurrent use if r is.
func SampleBeta(r Source, a, b float64) float64 {
	s := newBetaSampler(a, b)
	return s.sample(r)
}

// gammaSampler draws from Gamma(shape, 1) by Marsaglia and Tsang (2000), "A
// simple method for generating gamma variables".
type gammaSampler struct {
	d, c float64 // d = s − 1/3 and c = 1/√(9d), for s = shape or shape+1
	// invShape is 1/shape when shape < 1 and draws need the boost
	// U^(1/shape), zero otherwise.
	invShape float64
}

func newGammaSampler(shape float64) gammaSampler {
	var g gammaSampler
	if shape < 1 {
		g.invShape = 1 / shape
		shape++
	}
	g.d = shape - 1.0/3
	g.c = 1 / math.Sqrt(9*g.d)
	return g
}

// base returns a Gamma(d + 1/3) draw, always finite and positive.
func (g *gammaSampler) base(r Source) float64 {
	for {
		x := r.NormFloat64()
		t := g.c * x
		if t <= -1 {
			continue
		}
		v := 1 + t
		v = v * v * v
		u := r.Float64()
		x2 := x * x
		// The squeeze accepts about 98% of draws without a logarithm.
		if u < 1-0.0331*x2*x2 {
			return g.d * v
		}
		// 1 − v + log v, rewritten with log1p so that it does not cancel
		// catastrophically when d is huge (1e8 trials) and t tiny.
		w := 3*(math.Log1p(t)-t) - 3*t*t - t*t*t
		if math.Log(u) < 0.5*x2+g.d*w {
			return g.d * v
		}
	}
}

// logSample returns the logarithm of a Gamma(shape) draw. It is finite for
// every shape ≥ minShape: 1 − U lies in (0, 1], so the boost term is at most
// about 37/minShape in magnitude.
func (g *gammaSampler) logSample(r Source) float64 {
	l := math.Log(g.base(r))
	if g.invShape != 0 {
		l += math.Log1p(-r.Float64()) * g.invShape
	}
	return l
}

// betaSampler draws from one Beta distribution; building it once per arm
// saves two square roots per draw in Monte Carlo loops.
type betaSampler struct {
	x, y gammaSampler
	// logSpace is set when either shape is below 1.
	logSpace bool
	// fixed, when ≥ 0, is returned instead of a draw (degenerate shapes).
	fixed float64
}

func newBetaSampler(a, b float64) betaSampler {
	if f, ok := degenerateBeta(a, b); ok {
		return betaSampler{fixed: f}
	}
	a = min(max(a, minShape), maxShape)
	b = min(max(b, minShape), maxShape)
	return betaSampler{
		x:        newGammaSampler(a),
		y:        newGammaSampler(b),
		logSpace: a < 1 || b < 1,
		fixed:    -1,
	}
}

// degenerateBeta reports the value Beta(a, b) collapses to when the shapes are
// not both finite and positive: a shape ≤ 0 puts all mass on its own side's
// far end (a → 0 on 0, b → 0 on 1), a shape at +Inf on its near end. When the
// two disagree, or either is NaN, there is no single limit and it says 0.5.
func degenerateBeta(a, b float64) (float64, bool) {
	if math.IsNaN(a) || math.IsNaN(b) {
		return 0.5, true
	}
	limA, badA := shapeLimit(a, 0)
	limB, badB := shapeLimit(b, 1)
	switch {
	case badA && badB && limA != limB:
		return 0.5, true
	case badA:
		return limA, true
	case badB:
		return limB, true
	}
	return 0, false
}

// shapeLimit reports whether shape is out of (0, +Inf) and, if so, where it
// sends the mass: to zeroEnd when shape ≤ 0, the other end when it is +Inf.
func shapeLimit(shape, zeroEnd float64) (float64, bool) {
	switch {
	case shape <= 0:
		return zeroEnd, true
	case math.IsInf(shape, 1):
		return 1 - zeroEnd, true
	}
	return 0, false
}

func (s *betaSampler) sample(r Source) float64 {
	if s.fixed >= 0 {
		return s.fixed
	}
	if !s.logSpace {
		x := s.x.base(r)
		y := s.y.base(r)
		// 1/(1 + y/x) rather than x/(x+y): x+y overflows for shapes near
		// maxShape, y/x at worst goes to +Inf and gives the right limit 0.
		return 1 / (1 + y/x)
	}
	// X/(X+Y) = 1/(1 + e^(ly−lx)): the logistic of lx − ly, evaluated so
	// that the exponential can only underflow, never overflow.
	d := s.x.logSample(r) - s.y.logSample(r)
	if d >= 0 {
		return 1 / (1 + math.Exp(-d))
	}
	e := math.Exp(d)
	return e / (1 + e)
}

// Regimes of BetaQuantile.
const (
	// quadratureLimit is the largest α+β for which gonum's incomplete-beta
	// inversion is used; DESIGN.md warns its quadrature breaks above ~1e7.
	quadratureLimit = 1e6
	// normalMinShape is the smaller shape above which, beyond
	// quadratureLimit, the normal approximation is used: the posterior's
	// skewness is then at most 2/√1e4 = 0.02, shifting a 95% bound by about
	// 0.01 standard deviations.
	normalMinShape = 1e4
)

// BetaQuantile returns the p-quantile of Beta(alpha, beta): the x with
// P(X ≤ x) = p. p is clamped to [0, 1]; NaN p gives NaN. Invalid shapes give
// the limits documented on [SampleBeta]. The result is in [0, 1].
//
// Three regimes keep it accurate at every count the gateway can see:
//   - α+β ≤ 1e6: exact inversion of the regularized incomplete beta function
//     (gonum's distuv.Beta.Quantile).
//   - α+β > 1e6 and both shapes > 1e4: the normal approximation
//     mean + z_p·sd, clamped to [0, 1], where the Beta is all but symmetric.
//   - α+β > 1e6 and one shape s ≤ 1e4, the other t huge (a rare event seen
//     over 1e8 trials): the Beta is then G/(G+t) with G ~ Gamma(s) to
//     within a relative 1/√t, so the quantile is q/(q+t), q the Gamma(s)
//     quantile; the normal approximation would put such an interval's lower
//     bound far too low, even below 0.
//
// It is safe for concurrent use.
func BetaQuantile(alpha, beta, p float64) float64 {
	if math.IsNaN(p) {
		return p
	}
	if f, ok := degenerateBeta(alpha, beta); ok {
		return f
	}
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	alpha = max(alpha, minShape)
	beta = max(beta, minShape)
	var q float64
	switch {
	case alpha+beta <= quadratureLimit:
		q = distuv.Beta{Alpha: alpha, Beta: beta}.Quantile(p)
	case alpha > normalMinShape && beta > normalMinShape:
		n := alpha + beta
		mean := alpha / n
		sd := math.Sqrt(mean * (beta / n) / (n + 1))
		q = mean + sd*distuv.UnitNormal.Quantile(p)
	case alpha <= beta:
		g := distuv.Gamma{Alpha: alpha, Beta: 1}.Quantile(p)
		q = g / (g + beta)
	default:
		// X ~ Beta(α, β) ⇔ 1 − X ~ Beta(β, α).
		g := distuv.Gamma{Alpha: beta, Beta: 1}.Quantile(1 - p)
		q = alpha / (g + alpha)
	}
	if math.IsNaN(q) {
		// Defensive: should gonum fail to converge, fall back to the mean
		// rather than poison a report (NaN does not encode as JSON).
		q = alpha / (alpha + beta)
	}
	return min(max(q, 0), 1)
}
