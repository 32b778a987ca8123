// Package bandit is the mathematics of modelgate's arm choice and reports:
// Beta sampling, posteriors, Beta quantiles, Thompson sampling and uniform
// policies, P(best), expected loss, value remaining and expected regret.
//
// It does no I/O and keeps no state of its own. Every random draw comes from
// an injected [Source], so results are reproducible under a seeded
// *math/rand/v2.Rand, and callers give each goroutine its own source (a shared
// source is a data race).
//
// Each arm's posterior is Beta(α + successes, β + trials − successes), the
// model of API.md: a prediction is one Bernoulli trial of its arm, a success if
// at least one click for it arrives inside the attribution window.
package bandit

import (
	"math"
	"strconv"
)

// Source is the random source the package draws from. *math/rand/v2.Rand
// satisfies it.
//
// Float64 must return values in [0, 1) and NormFloat64 standard normal values.
// Implementations need not be safe for concurrent use, and this package never
// shares one Source across goroutines: callers keep one per goroutine (or per P)
// rather than one behind a mutex on the request path.
type Source interface {
	Float64() float64
	NormFloat64() float64
}

// Prior is the Beta(Alpha, Beta) prior every arm's posterior starts from.
//
// The zero value is the uniform prior Beta(1, 1). More generally a component
// that is not a finite positive number is treated as 1, so a half-filled or
// corrupt configuration still yields a proper posterior rather than NaN.
// A Prior is a plain value, safe for concurrent use.
type Prior struct {
	Alpha, Beta float64
}

// normalized returns p with every component that is not finite and positive
// replaced by 1.
func (p Prior) normalized() Prior {
	if !(p.Alpha > 0) || math.IsInf(p.Alpha, 1) {
		p.Alpha = 1
	}
	if !(p.Beta > 0) || math.IsInf(p.Beta, 1) {
		p.Beta = 1
	}
	return p
}

// Posterior returns the shape parameters of arm's posterior,
// Beta(prior.Alpha + successes, prior.Beta + trials − successes), after the
// prior's defaults are applied. Successes above Trials (corrupt or racing
// counters) are clamped to Trials, so both shapes are always finite and
// positive.
//
// The arm's pseudo-counts are added too: Beta(prior.Alpha + PseudoSuccesses
// + successes, prior.Beta + PseudoFailures + trials − successes).
func (p Prior) Posterior(arm Arm) (alpha, beta float64) {
	p = p.normalized()
	s := arm.successes()
	return p.Alpha + pseudo(arm.PseudoSuccesses) + s, p.Beta + pseudo(arm.PseudoFailures) + float64(arm.Trials) - s
}

// successes returns the arm's successes clamped to [0, Trials]; NaN counts
// as 0.
func (a *Arm) successes() float64 {
	if !(a.Successes > 0) {
		return 0
	}
	return min(a.Successes, float64(a.Trials))
}

// pseudo guards a pseudo-count: negative, NaN or infinite counts are 0.
func pseudo(x float64) float64 {
	if !(x > 0) || math.IsInf(x, 1) {
		return 0
	}
	return x
}

// Arm is one arm's counters in one segment, plus whether the policy may serve
// it.
//
// The zero value is a paused arm with no data: Choose never picks it and its
// posterior is the prior. Successes may exceed Trials when counters are
// flushed out of order or data is corrupt; every function here clamps
// Successes to Trials instead of producing NaN. An Arm is a plain value, safe
// for concurrent use.
//
// Successes may be fractional: an endpoint with value rewards adds each
// prediction's capped, normalised reward in [0, 1] (see package counters),
// and the Beta posterior takes it as a fractional Bernoulli outcome.
type Arm struct {
	Trials    uint64
	Successes float64
	// Active is false for a paused arm (kill switch or guardrail): it keeps
	// its counters and report statistics but is never served.
	Active bool
	// PseudoSuccesses and PseudoFailures are fractional counts added to the
	// prior: a segment's prior borrowed from the endpoint-wide posterior, or
	// counts discounted over time (with Trials and Successes then 0). Zero
	// adds nothing; negative or non-finite values count as 0.
	PseudoSuccesses, PseudoFailures float64
}

// Kind selects how a [Policy] splits traffic among active arms.
//
// The zero value is [Thompson], the default policy of API.md.
type Kind uint8

const (
	// Thompson draws each active arm's click rate from its posterior and
	// serves the arm with the highest draw, so traffic moves to the better arm
	// as evidence accumulates.
	Thompson Kind = iota
	// Uniform serves every active arm with equal probability: a plain A/B/n
	// split that ignores the counters.
	Uniform
)

// String returns the policy type name used in endpoint bodies: "thompson" or
// "uniform"; other values print as "Kind(n)".
func (k Kind) String() string {
	switch k {
	case Thompson:
		return "thompson"
	case Uniform:
		return "uniform"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Policy picks one arm per request.
//
// The zero value is Thompson sampling with a Beta(1, 1) prior and no
// exploration floor; API.md's default min_share of 0.01 is applied by whoever
// parses the endpoint body, not here. A Kind other than Thompson and Uniform
// behaves as Thompson. A nil *Policy behaves as the zero value.
//
// Choose, Shares and Analyze only read the Policy, so one Policy may be used
// by many goroutines at once as long as none modifies it and each uses its own
// Source.
type Policy struct {
	// Kind is Thompson (the zero value) or Uniform.
	Kind Kind
	// Prior is the Beta prior of every arm's posterior; the zero value is
	// Beta(1, 1).
	Prior Prior
	// MinShare is the exploration floor of Thompson sampling: with
	// probability ε = min(1, K·MinShare), K the number of active arms, Choose
	// serves an active arm uniformly at random, otherwise by Thompson
	// sampling, so every active arm's share of traffic is at least MinShare
	// (all arms get 1/K once MinShare ≥ 1/K). It keeps a losing arm's
	// posterior learning, which matters when click rates drift. Zero,
	// negative or NaN means no floor. Uniform ignores it.
	MinShare float64
}

// floor returns ε, the probability of a uniform pick among k active arms.
func (p *Policy) floor(k int) float64 {
	if !(p.MinShare > 0) {
		return 0
	}
	return min(1, float64(k)*p.MinShare)
}

// Choose returns the index in arms of the arm to serve, chosen among the arms
// with Active set, or -1 if no arm is active.
//
// It draws only from r and allocates nothing, so it is cheap enough for every
// request (well under a microsecond for 4 arms). Ties between equal posterior
// draws, which only happen with degenerate posteriors, are broken uniformly.
// Choose is safe for concurrent use as long as each goroutine passes its own
// Source.
func (p *Policy) Choose(r Source, arms []Arm) int {
	if p == nil {
		p = &Policy{}
	}
	k, only := countActive(arms)
	switch {
	case k == 0:
		return -1
	case k == 1:
		return only
	case p.Kind == Uniform:
		return nthActive(arms, pickIndex(r.Float64(), k))
	}
	if eps := p.floor(k); eps > 0 {
		// One uniform draw decides both whether to explore and, rescaled,
		// which arm: u/ε is uniform on [0, 1) given u < ε.
		if u := r.Float64(); u < eps {
			return nthActive(arms, pickIndex(u/eps, k))
		}
	}
	return thompson(r, p.Prior.normalized(), arms)
}

// Shares writes into out[i] the probability that Choose(r, arms) returns i
// right now: 0 for inactive arms; for active arms, exactly 1/K under Uniform or
// when the exploration floor is total, otherwise ε/K + (1 − ε)·P(i wins
// Thompson sampling), the latter estimated from draws Monte Carlo rounds of
// Choose's own sampling (draws ≤ 0 means [DefaultDraws]). Over the active arms
// the shares sum to 1 up to rounding. This is the report's traffic_share and
// the propensity an off-policy estimator needs.
//
// Shares panics if len(out) < len(arms); it does not allocate. It is safe for
// concurrent use as long as each goroutine passes its own Source and out.
func (p *Policy) Shares(r Source, arms []Arm, draws int, out []float64) {
	if p == nil {
		p = &Policy{}
	}
	out = out[:len(arms)]
	clear(out)
	k, only := countActive(arms)
	switch {
	case k == 0:
		return
	case k == 1:
		out[only] = 1
		return
	}
	eps := 1.0
	if p.Kind != Uniform {
		eps = p.floor(k)
	}
	if eps < 1 {
		if draws <= 0 {
			draws = DefaultDraws
		}
		prior := p.Prior.normalized()
		for range draws {
			out[thompson(r, prior, arms)]++
		}
		scale := (1 - eps) / float64(draws)
		for i := range out {
			out[i] *= scale
		}
	}
	base := eps / float64(k)
	for i := range arms {
		if arms[i].Active {
			out[i] += base
		}
	}
}

// Pick returns an index drawn with probability proportional to shares[i]
// (the output of Shares), or -1 when every share is zero. Choosing from a
// posterior's shares is Thompson sampling under that posterior, with the
// chosen arm's probability known exactly: its share. One draw from r; no
// allocation.
func Pick(r Source, shares []float64) int {
	total := 0.0
	last := -1
	for i, s := range shares {
		if s > 0 {
			total += s
			last = i
		}
	}
	if last < 0 {
		return -1
	}
	u := r.Float64() * total
	for i, s := range shares {
		if s <= 0 {
			continue
		}
		if u < s {
			return i
		}
		u -= s
	}
	return last // rounding left u past the end
}

// DefaultDraws is the number of Monte Carlo draws Shares and Analyze use when
// given draws ≤ 0: enough for P(best) to ±0.01 (95%).
const DefaultDraws = 10000

// countActive returns the number of active arms and the index of the last
// one.
func countActive(arms []Arm) (k, last int) {
	last = -1
	for i := range arms {
		if arms[i].Active {
			k++
			last = i
		}
	}
	return k, last
}

// pickIndex maps u in [0, 1) to an integer uniform in [0, k). The clamp
// guards against u·k rounding up to k.
func pickIndex(u float64, k int) int {
	return min(int(u*float64(k)), k-1)
}

// nthActive returns the index of the n-th (from 0) active arm.
func nthActive(arms []Arm, n int) int {
	for i := range arms {
		if arms[i].Active {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}

// thompson draws every active arm's rate from its posterior and returns the
// arm with the highest draw, breaking ties uniformly (reservoir sampling, so
// the common tie-free case costs no extra draw). prior must be normalized.
func thompson(r Source, prior Prior, arms []Arm) int {
	best, ties := -1, 0
	top := math.Inf(-1)
	for i := range arms {
		if !arms[i].Active {
			continue
		}
		a, b := prior.Posterior(arms[i])
		s := newBetaSampler(a, b)
		theta := s.sample(r)
		switch {
		case theta > top:
			best, top, ties = i, theta, 1
		case theta == top:
			ties++
			if r.Float64()*float64(ties) < 1 {
				best = i
			}
		}
	}
	return best
}
