package bandit

import (
	"errors"
	"math"
)

// Linear Thompson sampling (Agrawal and Goyal 2013) with a Bayesian ridge
// model per arm: the reward of a request whose context vector is x is
// xᵀθ + noise, θ ~ N(0, noise²/λ · I) a priori. After trials x₁…xₙ with
// rewards r₁…rₙ the posterior is θ ~ N(A⁻¹b, noise²·A⁻¹) with
// A = λI + Σ xxᵀ and b = Σ r·x: two sums, which is what lets replicas share
// them exactly. A request draws θ per active arm and serves the arm with
// the highest xᵀθ.
//
// Only xᵀθ matters, and given the posterior it is the normal
// N(xᵀμ, noise²·xᵀA⁻¹x). So the choice draws one normal per arm, and the
// probability of each arm winning is a one-dimensional integral, computed
// by quadrature (LinearShares) rather than Monte Carlo: exact to about
// 10⁻⁶ and cheap enough to give every request its own propensity.

// MaxLinearDims is the largest context vector a linear policy takes.
const MaxLinearDims = 64

// Sums layout: a linear arm's sufficient statistics are one []float64 of
// LinearSumsLen(d) values:
//
//	[0]                 n, the number of trials
//	[1]                 Σ r, the rewards
//	[2 : 2+d]           b = Σ r·x
//	[2+d : ]            the upper triangle of Σ xxᵀ, row by row:
//	                    (0,0) (0,1) … (0,d−1) (1,1) … (d−1,d−1)
//
// The prior's λI is not in the sums: it is added when they are fitted, so
// changing λ keeps the evidence.
const linearHeader = 2

// LinearSumsLen is the length of the sums of a d-dimensional linear arm.
func LinearSumsLen(d int) int { return linearHeader + d + d*(d+1)/2 }

// LinearDims returns the d whose sums have length n, or -1 when no d does.
func LinearDims(n int) int {
	for d := 1; d <= MaxLinearDims; d++ {
		if LinearSumsLen(d) == n {
			return d
		}
	}
	return -1
}

// AddTrial adds one trial of context x (len(x) = d) to sums: n by one and
// xxᵀ to the matrix. It does not allocate.
func AddTrial(sums, x []float64) {
	d := len(x)
	sums[0]++
	a := sums[linearHeader+d:]
	k := 0
	for i, xi := range x {
		if xi == 0 {
			k += d - i
			continue
		}
		for j := i; j < d; j++ {
			a[k] += xi * x[j]
			k++
		}
	}
}

// AddReward adds a reward r of context x to sums: r to Σ r and r·x to b.
func AddReward(sums, x []float64, r float64) {
	sums[1] += r
	b := sums[linearHeader : linearHeader+len(x)]
	for i, xi := range x {
		b[i] += r * xi
	}
}

// LinearArm is one arm's fitted posterior: the mean μ = A⁻¹b and W, the
// inverse of the lower Cholesky factor R of A (A = RRᵀ, so
// A⁻¹ = WᵀW), with which xᵀA⁻¹x = ‖Wx‖². It is computed once per change of
// the sums (FitLinear) and read by every request; it is immutable and safe
// for concurrent use. A nil *LinearArm is the prior with λ = 1.
type LinearArm struct {
	// Mu is the posterior mean of the coefficients, one per dimension.
	Mu []float64
	// W is lower triangular, packed row by row: (0,0) (1,0) (1,1) (2,0) …
	W []float64
	// Trials and Rewards are the sums' n and Σ r, for reports.
	Trials, Rewards float64
}

// ErrNotPositive is returned by FitLinear when λI + Σ xxᵀ is not positive
// definite: sums that are corrupt (negative or non-finite).
var ErrNotPositive = errors.New("linear sums: matrix not positive definite")

// FitLinear fits an arm's posterior from its sums (LinearSumsLen(d) values;
// nil or short sums mean no evidence) with ridge prior lambda (a value
// that is not finite and positive means 1). It costs O(d³) and allocates:
// call it when the sums change, never per request.
func FitLinear(d int, lambda float64, sums []float64) (*LinearArm, error) {
	if d < 1 || d > MaxLinearDims {
		return nil, errors.New("linear sums: dimension out of range")
	}
	if !(lambda > 0) || math.IsInf(lambda, 1) {
		lambda = 1
	}
	if len(sums) != LinearSumsLen(d) {
		sums = make([]float64, LinearSumsLen(d))
	}
	for _, v := range sums {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, ErrNotPositive
		}
	}
	// A, full and row-major, then its Cholesky factor R in place (lower).
	a := make([]float64, d*d)
	up := sums[linearHeader+d:]
	k := 0
	for i := range d {
		for j := i; j < d; j++ {
			a[i*d+j], a[j*d+i] = up[k], up[k]
			k++
		}
		a[i*d+i] += lambda
	}
	for j := range d {
		s := a[j*d+j]
		for k := range j {
			s -= a[j*d+k] * a[j*d+k]
		}
		if !(s > 0) {
			return nil, ErrNotPositive
		}
		rjj := math.Sqrt(s)
		a[j*d+j] = rjj
		for i := j + 1; i < d; i++ {
			s := a[i*d+j]
			for k := range j {
				s -= a[i*d+k] * a[j*d+k]
			}
			a[i*d+j] = s / rjj
		}
	}
	// W = R⁻¹, lower triangular, by forward substitution column by column.
	w := make([]float64, d*(d+1)/2)
	row := func(i int) int { return i * (i + 1) / 2 }
	for j := range d {
		w[row(j)+j] = 1 / a[j*d+j]
		for i := j + 1; i < d; i++ {
			s := 0.0
			for k := j; k < i; k++ {
				s -= a[i*d+k] * w[row(k)+j]
			}
			w[row(i)+j] = s / a[i*d+i]
		}
	}
	// μ = A⁻¹b = Wᵀ(Wb).
	b := sums[linearHeader : linearHeader+d]
	wb := make([]float64, d)
	for i := range d {
		s := 0.0
		for k := 0; k <= i; k++ {
			s += w[row(i)+k] * b[k]
		}
		wb[i] = s
	}
	mu := make([]float64, d)
	for j := range d {
		s := 0.0
		for i := j; i < d; i++ {
			s += w[row(i)+j] * wb[i]
		}
		mu[j] = s
	}
	return &LinearArm{Mu: mu, W: w, Trials: sums[0], Rewards: sums[1]}, nil
}

// Score returns the mean xᵀμ and the standard deviation √(xᵀA⁻¹x) of the
// arm's expected reward at x (before the noise scale): O(d²), no
// allocation. A nil arm is the prior with λ = 1.
func (a *LinearArm) Score(x []float64) (mean, sd float64) {
	if a == nil {
		ss := 0.0
		for _, v := range x {
			ss += v * v
		}
		return 0, math.Sqrt(ss)
	}
	ss := 0.0
	k := 0
	for i := range x {
		mean += x[i] * a.Mu[i]
		s := 0.0
		for j := 0; j <= i; j++ {
			s += a.W[k] * x[j]
			k++
		}
		ss += s * s
	}
	return mean, math.Sqrt(ss)
}

// LinearScore is one arm's score distribution at a request's x, as
// LinearShares and LinearChoose read it: xᵀθ ~ N(Mean, SD²) with SD the
// noise times LinearArm.Score's sd. Active is false for an arm the policy
// may not serve.
type LinearScore struct {
	Mean, SD float64
	Active   bool
}

// LinearScores fills out[i] with arm i's score at x under noise (a value
// that is not finite and positive means 1); arms[i] nil is the prior.
// active[i] says whether the arm may be served. It does not allocate.
func LinearScores(x []float64, noise float64, arms []*LinearArm, active []bool, out []LinearScore) {
	if !(noise > 0) || math.IsInf(noise, 1) {
		noise = 1
	}
	for i, a := range arms {
		if !active[i] {
			out[i] = LinearScore{}
			continue
		}
		m, s := a.Score(x)
		out[i] = LinearScore{Mean: m, SD: noise * s, Active: true}
	}
}

// LinearChoose draws every active arm's xᵀθ from its score and returns the
// index of the highest, or -1 when no arm is active: linear Thompson
// sampling. With probability ε = min(1, K·minShare) it serves an active arm
// uniformly instead, as Policy.Choose does. One normal draw per active
// arm; no allocation.
func LinearChoose(r Source, scores []LinearScore, minShare float64) int {
	k, only, _ := activeScores(scores)
	switch {
	case k == 0:
		return -1
	case k == 1:
		return only
	}
	if eps := (&Policy{MinShare: minShare}).floor(k); eps > 0 {
		// As in Choose: one uniform draw decides whether to explore and,
		// rescaled, which arm.
		if u := r.Float64(); u < eps {
			n := pickIndex(u/eps, k)
			for i := range scores {
				if scores[i].Active {
					if n == 0 {
						return i
					}
					n--
				}
			}
		}
	}
	best, top := -1, math.Inf(-1)
	for i, s := range scores {
		if !s.Active {
			continue
		}
		if v := s.Mean + s.SD*r.NormFloat64(); v > top || best < 0 {
			best, top = i, v
		}
	}
	return best
}

// Quadrature of LinearShares: the midpoint rule on [−quadSpan, quadSpan]
// standard deviations with quadNodes nodes. The integrands are smooth
// (products of normal CDFs), for which the rule converges fast; the mass
// outside ±5σ is 6·10⁻⁷.
const (
	quadNodes = 20
	quadSpan  = 5.0
	quadStep  = 2 * quadSpan / quadNodes
)

// quadWeights are the rule's weights φ(z_n), normalised to sum to 1 so
// that a constant integrand is exact. Computed once; never written.
var quadWeights = func() (w [quadNodes]float64) {
	sum := 0.0
	for n := range w {
		z := -quadSpan + (float64(n)+0.5)*quadStep
		w[n] = math.Exp(-z * z / 2)
		sum += w[n]
	}
	for n := range w {
		w[n] /= sum
	}
	return w
}()

// LinearShares writes into out[i] the probability that LinearChoose with
// these scores returns i: 0 for inactive arms, else ε/K + (1−ε)·P(arm i's
// draw is the highest). P is computed by quadrature of
// ∫ φ(z) Π_{j≠i} Φ((m_i + s_i·z − m_j)/s_j) dz for every active arm but the
// one with the widest score, whose P is the rest (1 − the others): that
// integral is the one a narrow arm's Φ, close to a step in the wide arm's
// z, would make inaccurate. It is deterministic, needs no random source
// and does not allocate: about 20·(K−1)² normal CDFs, fewer when arms
// are far apart. Choosing by Pick from these shares serves each arm with
// exactly its logged propensity; the shares are within about 0.03 of
// exact linear Thompson sampling when one arm's score is far narrower than
// another's, and far closer otherwise (see the tests).
func LinearShares(scores []LinearScore, minShare float64, out []float64) {
	out = out[:len(scores)]
	clear(out)
	k, only, wide := activeScores(scores)
	switch {
	case k == 0:
		return
	case k == 1:
		out[only] = 1
		return
	}
	eps := (&Policy{MinShare: minShare}).floor(k)
	if eps < 1 {
		rest := 1.0
		for i, si := range scores {
			if !si.Active || i == wide {
				continue
			}
			p := 0.0
			for n, w := range quadWeights {
				t := si.Mean + si.SD*(-quadSpan+(float64(n)+0.5)*quadStep)
				f := w
				for j, sj := range scores {
					if j == i || !sj.Active {
						continue
					}
					f *= normCDF(t, sj)
					if f < 1e-12 {
						f = 0
						break
					}
				}
				p += f
			}
			p = min(max(p, 0), rest)
			out[i] = p
			rest -= p
		}
		out[wide] = rest
		for i := range out {
			out[i] *= 1 - eps
		}
	}
	for i := range scores {
		if scores[i].Active {
			out[i] += eps / float64(k)
		}
	}
}

// activeScores returns the number of active scores, the index of the last
// one and of the one with the largest SD (-1 when none is active).
func activeScores(scores []LinearScore) (k, last, wide int) {
	last, wide = -1, -1
	for i := range scores {
		if scores[i].Active {
			k++
			last = i
			if wide < 0 || scores[i].SD > scores[wide].SD {
				wide = i
			}
		}
	}
	return k, last, wide
}

// normCDF is P(X ≤ t) for X ~ N(s.Mean, s.SD²); a point mass when SD is 0,
// counted as half at t itself so ties split evenly.
func normCDF(t float64, s LinearScore) float64 {
	if !(s.SD > 0) {
		switch {
		case t > s.Mean:
			return 1
		case t < s.Mean:
			return 0
		}
		return 0.5
	}
	return phi((t - s.Mean) / s.SD)
}

// phi is the standard normal CDF to within 1.5·10⁻⁷ (Abramowitz and
// Stegun 7.1.26 for erfc): one exponential, several times cheaper than
// math.Erfc on the request path.
func phi(z float64) float64 {
	switch {
	case z > 8:
		return 1
	case z < -8:
		return 0
	}
	x := math.Abs(z) / math.Sqrt2
	t := 1 / (1 + 0.3275911*x)
	y := t * (0.254829592 + t*(-0.284496736+t*(1.421413741+t*(-1.453152027+t*1.061405429)))) * math.Exp(-x*x)
	if z >= 0 {
		return 1 - y/2
	}
	return y / 2
}
