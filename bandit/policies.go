package bandit

import "math"

// This file holds the policies beyond Thompson and Uniform that the offline
// simulator (package sim) compares them with, and the discounting a
// non-stationary endpoint would use. They read the same [Arm] counters as
// [Policy.Choose], pseudo-counts included, so discounted counts (Trials and
// Successes 0, the decayed counts in PseudoSuccesses and PseudoFailures)
// work with every one of them.

// DefaultUCBC is the exploration constant c of classic UCB1 (Auer,
// Cesa-Bianchi and Fischer 2002): mean + √(2 ln t / n).
const DefaultUCBC = 2

// Discount returns x decayed over dt time units with the given half-life:
// x·2^(−dt/halfLife), the same as multiplying x by 2^(−1/halfLife) once per
// unit of time. Applied lazily, a counter keeps its value and the time of its
// last update, and readers discount it by the time elapsed since.
//
// A halfLife that is not a finite positive number means no discounting, and
// so does a dt that is not positive (or NaN): x is returned unchanged. It is
// safe for concurrent use.
func Discount(x, dt, halfLife float64) float64 {
	if !(halfLife > 0) || math.IsInf(halfLife, 1) || !(dt > 0) {
		return x
	}
	return x * math.Exp2(-dt/halfLife)
}

// UCB1 returns the index of the active arm with the highest upper confidence
// bound mean + √(c·ln t / n), or -1 if no arm is active. n is the arm's
// trials plus its pseudo-counts, mean its successes (plus PseudoSuccesses)
// over n, t the sum of n over the active arms; a c that is not a finite
// positive number means [DefaultUCBC]. UCB1 ignores the prior: an active arm
// with n = 0 has an infinite bound, so every arm is served once before any is
// served twice.
//
// Equal bounds are broken uniformly with r; otherwise UCB1 is deterministic,
// which is why it suffers more than Thompson sampling when counters are
// updated in batches: the same arm is served until the next update. It does
// not allocate and is safe for concurrent use as long as each goroutine
// passes its own Source.
func UCB1(r Source, arms []Arm, c float64) int {
	if !(c > 0) || math.IsInf(c, 1) {
		c = DefaultUCBC
	}
	return highestBound(r, arms, c)
}

// EpsilonGreedy returns the index of the arm to serve under ε-greedy, or -1
// if no arm is active: with probability epsilon an active arm uniformly at
// random, otherwise the active arm with the highest observed rate (successes
// plus PseudoSuccesses over trials plus both pseudo-counts), arms never
// served first. epsilon is clamped to [0, 1]; NaN means 0 (pure greedy).
// The prior is ignored.
//
// Ties are broken uniformly with r. It does not allocate and is safe for
// concurrent use as long as each goroutine passes its own Source.
func EpsilonGreedy(r Source, arms []Arm, epsilon float64) int {
	k, only := countActive(arms)
	switch {
	case k == 0:
		return -1
	case k == 1:
		return only
	}
	if epsilon > 0 {
		// As in Choose: one uniform draw decides whether to explore and,
		// rescaled, which arm.
		if u := r.Float64(); u < min(epsilon, 1) {
			return nthActive(arms, pickIndex(u/min(epsilon, 1), k))
		}
	}
	return highestBound(r, arms, 0)
}

// observed returns an arm's number of observations n (trials plus
// pseudo-counts) and its observed rate, 0 when n is 0.
func observed(a *Arm) (n, mean float64) {
	s := a.successes() + pseudo(a.PseudoSuccesses)
	n = float64(a.Trials) + pseudo(a.PseudoSuccesses) + pseudo(a.PseudoFailures)
	if n > 0 {
		mean = s / n
	}
	return n, mean
}

// highestBound returns the active arm maximizing mean + √(c·ln t / n)
// (c = 0: the observed rate), arms with n = 0 first, ties broken uniformly.
func highestBound(r Source, arms []Arm, c float64) int {
	var logT float64
	if c > 0 {
		var t float64
		for i := range arms {
			if arms[i].Active {
				n, _ := observed(&arms[i])
				t += n
			}
		}
		// With fractional pseudo-counts t may be below 1; a negative
		// logarithm would make the square root NaN.
		logT = max(math.Log(t), 0)
	}
	best, ties := -1, 0
	top := math.Inf(-1)
	for i := range arms {
		if !arms[i].Active {
			continue
		}
		n, score := observed(&arms[i])
		switch {
		case !(n > 0):
			score = math.Inf(1)
		case c > 0:
			score += math.Sqrt(c * logT / n)
		}
		switch {
		case score > top:
			best, top, ties = i, score, 1
		case score == top:
			ties++
			if r.Float64()*float64(ties) < 1 {
				best = i
			}
		}
	}
	return best
}
