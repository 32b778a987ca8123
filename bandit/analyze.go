package bandit

import "math"

// ArmStats is the posterior summary of one arm, as the report shows it.
//
// Analyze fills every field, each finite and in [0, 1]; the zero value has no
// meaning of its own. It is a plain value, safe for concurrent use.
type ArmStats struct {
	// Rate is the posterior mean click rate, α/(α+β).
	Rate float64
	// CILow and CIHigh bound the equal-tailed 95% posterior interval: the
	// 2.5% and 97.5% quantiles (see BetaQuantile for how they are computed
	// at large counts). For the skewed posteriors of priors with shapes
	// below 1 the interval need not contain Rate; with shapes ≥ 1 it does.
	CILow, CIHigh float64
	// PBest is the posterior probability that this arm has the highest rate
	// among the active arms; 0 for an inactive arm.
	PBest float64
	// RegretGap is E[max_j θ_j] − E[θ], j ranging over the arms with at
	// least one trial: the click rate given up per trial this arm served.
	// 0 for an arm without trials or when fewer than two arms have trials.
	// See RegretGaps.
	RegretGap float64
	// ExpectedLoss is E[max(θmax, θ) − θ], θmax the highest rate among the
	// active arms: the click rate given up per request by serving this arm
	// instead of the best active one. Defined for inactive arms too (an arm
	// better than every active arm loses nothing), and 0 when no arm is
	// active.
	ExpectedLoss float64
}

// Analysis is the posterior analysis of one segment's arms, as computed by
// [Analyze]. The zero value has no arms; note its Best is 0, not -1, so build
// Analyses with Analyze. It is a plain value, safe for concurrent reads.
type Analysis struct {
	// Arms has one entry per arm given to Analyze, in the same order.
	Arms []ArmStats
	// ValueRemaining is the 95th percentile over posterior draws of
	// (θmax − θbest)/θbest, θmax the highest active draw and θbest the draw
	// of arm Best: how much relative uplift could still be left on the table
	// by stopping now with Best. 0 with fewer than two active arms. Draws
	// where θbest is exactly 0 count as 0 if θmax is 0 too and as unbounded
	// otherwise; an unbounded percentile is reported as math.MaxFloat64, so
	// the field stays finite (JSON cannot encode +Inf) and compares as "keep
	// running".
	ValueRemaining float64
	// ExpectedRegret is the expected cumulative regret, in successes (clicks)
	// lost so far by not having served the best arm on every trial:
	//
	//	Σ_a trials_a · (E[max_j θ_j] − E[θ_a])
	//
	// with a and j ranging over the arms with at least one trial, active or
	// paused, under the current posterior. Arms without trials are left out
	// of the max: they served nothing, and their prior-only posterior would
	// otherwise inflate regret. It is computed exactly (see RegretGaps), not
	// from the draws, so the same counts always give the same value; a
	// single arm's regret is exactly 0 and it is never negative.
	ExpectedRegret float64
	// Best is the index of the active arm with the highest PBest (the lowest
	// index on equal PBest), or -1 if no arm is active.
	Best int
}

// Analyze computes the posterior statistics of arms under prior, using draws
// joint Monte Carlo draws from the posteriors (draws ≤ 0 means
// [DefaultDraws]; use at least 1e4). In each draw the highest active arm wins,
// ties broken uniformly (each tied arm gets an equal fraction of the win), so
// PBest sums to 1 over the active arms.
//
// Analyze is for reports, not the request path: it allocates O(draws ×
// active arms) memory and takes a few milliseconds at 1e4 draws. It is safe
// for concurrent use as long as each goroutine passes its own Source.
func Analyze(r Source, prior Prior, arms []Arm, draws int) Analysis {
	res := Analysis{Arms: make([]ArmStats, len(arms)), Best: -1}
	if len(arms) == 0 {
		return res
	}
	if draws <= 0 {
		draws = DefaultDraws
	}
	prior = prior.normalized()

	samplers := make([]betaSampler, len(arms))
	active := make([]int, 0, len(arms))
	for i, arm := range arms {
		a, b := prior.Posterior(arm)
		st := &res.Arms[i]
		st.Rate = 1 / (1 + b/a)
		st.CILow = BetaQuantile(a, b, 0.025)
		st.CIHigh = BetaQuantile(a, b, 0.975)
		samplers[i] = newBetaSampler(a, b)
		if arm.Active {
			active = append(active, i)
		}
	}
	for i, g := range RegretGaps(prior, arms) {
		res.Arms[i].RegretGap = g
		res.ExpectedRegret += float64(arms[i].Trials) * g
	}
	k := len(active)
	if k == 0 {
		// Nothing to compare: no P(best), loss or value remaining without
		// active arms.
		return res
	}

	var (
		theta = make([]float64, len(arms))
		wins  = make([]float64, len(arms))
		loss  = make([]float64, len(arms))
		// Per draw: θmax over the active arms, and every active arm's θ,
		// kept until Best is known to compute value remaining.
		maxDraws    = make([]float64, draws)
		activeDraws = make([]float64, draws*k)
	)
	for d := range draws {
		for i := range samplers {
			theta[i] = samplers[i].sample(r)
		}
		top, ties, first := math.Inf(-1), 0, -1
		row := activeDraws[d*k : (d+1)*k]
		for j, i := range active {
			row[j] = theta[i]
			switch {
			case theta[i] > top:
				top, ties, first = theta[i], 1, i
			case theta[i] == top:
				ties++
			}
		}
		if ties == 1 {
			wins[first]++
		} else {
			share := 1 / float64(ties)
			for _, i := range active {
				if theta[i] == top {
					wins[i] += share
				}
			}
		}
		maxDraws[d] = top
		for i, t := range theta {
			loss[i] += max(top, t) - t
		}
	}

	n := float64(draws)
	for i := range arms {
		res.Arms[i].PBest = wins[i] / n
		res.Arms[i].ExpectedLoss = loss[i] / n
	}
	col := 0
	for j, i := range active {
		if wins[i] > wins[active[col]] {
			col = j
		}
	}
	res.Best = active[col]
	if k > 1 {
		// Reuse maxDraws for the relative uplift of each draw.
		for d, top := range maxDraws {
			maxDraws[d] = relativeUplift(top, activeDraws[d*k+col])
		}
		res.ValueRemaining = min(percentile(maxDraws, 0.95), math.MaxFloat64)
	}
	return res
}

// relativeUplift returns (top − best)/best, guarding best = 0.
func relativeUplift(top, best float64) float64 {
	switch {
	case best > 0:
		return (top - best) / best
	case top > best:
		return math.Inf(1)
	}
	return 0
}

// percentile returns the p-quantile of xs by linear interpolation between
// order statistics (the usual "type 7" definition), reordering xs in place.
// xs must be non-empty and free of NaN.
func percentile(xs []float64, p float64) float64 {
	h := p * float64(len(xs)-1)
	lo := int(h)
	v := selectNth(xs, lo)
	if lo+1 >= len(xs) || h == float64(lo) {
		return v
	}
	// After selectNth, xs[lo+1:] holds the larger values; their minimum is
	// the next order statistic.
	next := xs[lo+1]
	for _, x := range xs[lo+2:] {
		next = min(next, x)
	}
	if math.IsInf(next, 1) {
		return next
	}
	return v + (h-float64(lo))*(next-v)
}

// selectNth reorders xs so that xs[n] is the value it would have if xs were
// sorted, with no larger value before it and no smaller one after, and
// returns it. Hoare's quickselect with a median-of-three pivot: linear time,
// where sorting 1e4 draws would cost as much as drawing them.
func selectNth(xs []float64, n int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// Median of three to xs[mid].
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		i, j := lo, hi
		for i <= j {
			for xs[i] < pivot {
				i++
			}
			for xs[j] > pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return xs[n]
		}
	}
	return xs[n]
}
