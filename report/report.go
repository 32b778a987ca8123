// Package report turns the bandit counters of an endpoint into what analysts
// read: posterior rates with intervals, P(best), expected loss, traffic share,
// the stop rule's decision and expected cumulative regret.
package report

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/shadow"
)

// SRMThreshold is the p-value below which the report warns of a sample
// ratio mismatch.
const SRMThreshold = 0.001

// Draws is the number of joint posterior draws behind P(best), expected
// loss, value remaining and traffic share.
const Draws = 20000

// Unavailable is the report state of an arm that is not paused but whose
// version cannot serve now; the other states are the registry's (active,
// paused).
const Unavailable = "unavailable"

// Arm is one arm's row of a report.
type Arm struct {
	Arm string `json:"arm"`
	// State is registry.Active, registry.Paused or Unavailable.
	State  string `json:"state"`
	Trials uint64 `json:"trials"`
	// Successes are whole for a click endpoint; with value rewards each
	// prediction adds its capped, normalised reward (counters.Successes).
	Successes float64 `json:"successes"`
	// Rate is the posterior mean click rate, or with value rewards the
	// posterior mean of the capped reward ÷ cap.
	Rate float64 `json:"rate"`
	// MeanValue is, on an endpoint with value rewards, the realised mean
	// capped reward per trial in the reward's own unit (successes × cap ÷
	// trials; 0 without trials); nil, and left out, on a click endpoint.
	MeanValue    *float64   `json:"mean_value,omitempty"`
	CI95         [2]float64 `json:"ci95"`
	PBest        float64    `json:"p_best"`
	ExpectedLoss float64    `json:"expected_loss"`
	TrafficShare float64    `json:"traffic_share"`
	OffPolicy    *OffPolicy `json:"off_policy"`
	// Errors counts the arm's backend failures by class since the process
	// started (unavailable, deadline, bad_output, …).
	Errors map[string]uint64 `json:"errors"`
	// Reason says why the arm was paused automatically, if it was.
	Reason string `json:"reason,omitempty"`
	// Coefficients are a linear-thompson arm's posterior coefficients, one
	// per dimension of the context vector, named; nil for other policies.
	Coefficients []Coefficient `json:"coefficients,omitempty"`
	// RegretGap is the click rate given up per trial this arm served, under
	// the current posterior (bandit.ArmStats.RegretGap); history points
	// accumulate regret from it. Not part of the JSON.
	RegretGap float64 `json:"-"`
}

// Coefficient is one dimension of a linear-thompson arm's model: its name
// (registry.LinearModel.Names), the posterior mean of its coefficient and
// the posterior standard deviation (noise·√(A⁻¹)ⱼⱼ). The arm's expected
// reward at a context vector x is Σ mean·x.
type Coefficient struct {
	Name string  `json:"name"`
	Mean float64 `json:"mean"`
	SD   float64 `json:"sd"`
}

// OffPolicy holds inverse-propensity and doubly robust estimates of an
// arm's click rate.
type OffPolicy struct {
	// N is every logged prediction of the endpoint (and segment) in the
	// range; Served is how many of them this arm served.
	N      int        `json:"n"`
	Served int        `json:"served"`
	IPS    float64    `json:"ips"`
	SNIPS  float64    `json:"snips"`
	CI95   [2]float64 `json:"ci95"`
	// DR is the doubly robust estimate (offpolicy.Result.DR) whose
	// direct-method part is the arm's posterior mean in the prediction's
	// segment, as of the report; DRCI95 its 95% interval. The posterior
	// holds the same clicks the correction term reweights, a mild
	// optimistic bias of the direct part that the correction mostly
	// removes. Its range is the segments' whole UTC days (a segment keeps
	// its sums per day), and for an endpoint without segment_by the same
	// minutes as SNIPS. Both are 0 when no segment's sums are in the
	// range, which retention does not cause: days outlive their minutes.
	DR     float64    `json:"dr"`
	DRCI95 [2]float64 `json:"dr_ci95"`
}

// Decision is the stop rule's verdict.
type Decision struct {
	Status         string  `json:"status"`
	Arm            *string `json:"arm"`
	Reason         *string `json:"reason"`
	ValueRemaining float64 `json:"value_remaining"`
}

// Health holds checks on how the experiment ran.
type Health struct {
	SRMPValue *float64 `json:"srm_p_value"`
	Warnings  []string `json:"warnings"`
}

// Regret holds the experiment's cost estimates.
type Regret struct {
	// ExpectedCumulative is Σ_a trials_a · (E[max_j θ_j] − E[θ_a]) under
	// the current posterior, computed exactly (bandit.RegretGaps): the
	// clicks lost so far, every trial valued at what is known now. History
	// points accumulate it interval by interval instead (see PointAfter).
	ExpectedCumulative float64 `json:"expected_cumulative"`
}

// Report is GET /v1/endpoints/{endpoint}/report.
type Report struct {
	Endpoint    string   `json:"endpoint"`
	GeneratedAt string   `json:"generated_at"`
	Segment     string   `json:"segment"`
	Segments    []string `json:"segments"`
	// Holdout compares the bandit with the endpoint's holdout; nil (null)
	// when the policy has none.
	Holdout *Holdout `json:"holdout"`
	// Shadows are the endpoint's shadow arms, each with what its calls
	// and the replay of clicks show (endpoint-wide: the same in every
	// segment's report); [] when it has none.
	Shadows  []shadow.Summary `json:"shadows"`
	Arms     []Arm            `json:"arms"`
	Decision Decision         `json:"decision"`
	Health   Health           `json:"health"`
	Regret   Regret           `json:"regret"`
}

// Holdout is what the bandit is worth against the endpoint's holdout arm:
// the realised click rates (clicks per trial) of the held-out predictions
// and of every other prediction (the bandit's, fallbacks and sticky ones
// included, across every segment), and the relative lift of the bandit
// over the holdout with its 95% interval. It is endpoint-wide: the same in
// every segment's report.
type Holdout struct {
	Arm             string  `json:"arm"`
	Share           float64 `json:"share"`
	Trials          uint64  `json:"trials"`
	Successes       float64 `json:"successes"`
	Rate            float64 `json:"rate"`
	BanditTrials    uint64  `json:"bandit_trials"`
	BanditSuccesses float64 `json:"bandit_successes"`
	BanditRate      float64 `json:"bandit_rate"`
	// Lift is bandit_rate / rate − 1; nil while either side has no trial
	// or the holdout no click.
	Lift *float64 `json:"lift"`
	// LiftCI95 is the lift's 95% interval by the delta method on the log
	// of the rate ratio; nil until each side has HoldoutMinSuccesses
	// clicks.
	LiftCI95 *[2]float64 `json:"lift_ci95"`
}

// HoldoutMinSuccesses is how many clicks each side of a holdout needs for
// the lift's interval: the delta method's normal approximation of the log
// rates needs a few.
const HoldoutMinSuccesses = 5

// Lift is the relative lift of rate b over rate h, from b's trials bt and
// successes bs and h's ht and hs: b/h − 1, and its 95% interval
// exp(log(b/h) ± 1.96·se) − 1 with se² = 1/bs − 1/bt + 1/hs − 1/ht (the
// delta method's variance of the log of each binomial rate). lift is nil
// when it is undefined (a side without trials, or hs = 0), ci when either
// side has fewer than HoldoutMinSuccesses successes. Fractional successes
// (value rewards, each prediction's reward in [0, 1]) use the same
// variance: a reward in [0, 1] varies no more than a Bernoulli outcome of
// the same mean, so the interval is conservative for them.
func Lift(bt uint64, bs float64, ht uint64, hs float64) (lift *float64, ci *[2]float64) {
	if bt == 0 || ht == 0 || !(hs > 0) {
		return nil, nil
	}
	ratio := (bs / float64(bt)) / (hs / float64(ht))
	l := ratio - 1
	if bs < HoldoutMinSuccesses || hs < HoldoutMinSuccesses {
		return &l, nil
	}
	se := math.Sqrt(max(0, 1/bs-1/float64(bt)+1/hs-1/float64(ht)))
	const z = 1.959963984540054
	return &l, &[2]float64{ratio*math.Exp(-z*se) - 1, ratio*math.Exp(z*se) - 1}
}

// holdout builds the report's Holdout from the endpoint's entries: the
// holdout arm's cells in counters.HoldoutSegment against the cells the
// bandit's endpoint-wide posterior is drawn from (every arm of the
// endpoint); nil when the endpoint has no holdout.
func holdout(ep *registry.Endpoint, entries []counters.Entry, idx map[string]int) *Holdout {
	hp := ep.Policy.Holdout
	if hp == nil {
		return nil
	}
	h := &Holdout{Arm: hp.Arm, Share: hp.Share}
	all := counters.View(len(ep.Policy.SegmentBy) > 0, counters.AllSegment)
	for _, e := range entries {
		switch _, ok := idx[e.Key.Arm]; {
		case e.Key.Segment == counters.HoldoutSegment && e.Key.Arm == hp.Arm:
			h.Trials += e.Trials
			h.Successes += min(e.SuccessCount(), float64(e.Trials))
		case ok && counters.InView(all, e.Key.Segment):
			h.BanditTrials += e.Trials
			h.BanditSuccesses += min(e.SuccessCount(), float64(e.Trials))
		}
	}
	if h.Trials > 0 {
		h.Rate = h.Successes / float64(h.Trials)
	}
	if h.BanditTrials > 0 {
		h.BanditRate = h.BanditSuccesses / float64(h.BanditTrials)
	}
	h.Lift, h.LiftCI95 = Lift(h.BanditTrials, h.BanditSuccesses, h.Trials, h.Successes)
	return h
}

// Input is what a report is built from.
type Input struct {
	Endpoint  *registry.Endpoint
	Table     *counters.Table
	Errors    *counters.Errors      // nil: no error counts
	Available func(arm string) bool // nil: every arm can serve
	Segment   string
	Now       time.Time
	Shares    []float64         // nil: computed from the plain counts
	OffPolicy *offpolicy.Result // nil: no prediction log sums
	Draws     int               // posterior draws; 0 = Draws
	// Entries, when not nil, are the endpoint's counter entries to use
	// instead of reading Table (a caller building many segments' reports
	// reads the table once); Segments likewise lists its segments.
	Entries  []counters.Entry
	Segments []string
	// Shadows are the report's shadows entries (nil: none).
	Shadows []shadow.Summary
}

// Build computes the report of an endpoint for one segment from the counters
// in the table. segment "" or "all" aggregates every segment (for an endpoint
// without segment_by, "all" is its only segment): it reads the cells the
// router draws from (counters.View), so counts left in segments of an
// earlier segment_by setting are not in it.
//
// available tells whether an arm's model can serve now (nil: every arm
// can); an arm that cannot is reported "unavailable" with no traffic share,
// as the router never picks it.
//
// policyShares, when not nil, are the traffic shares as the router computes
// them (with a segment's borrowed prior or discounted counts); nil computes
// them from the plain counts.
func Build(in Input) *Report {
	ep, table, errs, available, segment, now, policyShares := in.Endpoint, in.Table, in.Errors, in.Available, in.Segment, in.Now, in.Shares
	if segment == "" {
		segment = counters.AllSegment
	}
	idx := make(map[string]int, len(ep.Arms))
	arms := make([]bandit.Arm, len(ep.Arms))
	for i, a := range ep.Arms {
		idx[a] = i
		arms[i].Active = ep.ArmStates[a] != registry.Paused && (available == nil || available(a))
	}
	entries := in.Entries
	if entries == nil {
		entries = table.Entries(ep.Name)
	}
	// The cells the router draws this segment's posterior from: for "all"
	// of a segmented endpoint, the sum of its segments (not cells left
	// from before segment_by was set); of one without segment_by, its one
	// segment (not the segments of an earlier segment_by).
	view := counters.View(len(ep.Policy.SegmentBy) > 0, segment)
	var overflowed uint64
	for _, e := range entries {
		if e.Key.Segment == counters.OtherSegment {
			overflowed += e.Trials
		}
		i, ok := idx[e.Key.Arm]
		if !ok || !counters.InView(view, e.Key.Segment) {
			continue
		}
		arms[i].Trials += e.Trials
		arms[i].Successes += e.SuccessCount()
	}
	segs := in.Segments
	if segs == nil {
		segs = table.Segments(ep.Name)
	}
	r := &Report{Endpoint: ep.Name, GeneratedAt: now.UTC().Format(time.RFC3339), Segment: segment,
		Segments: segs, Holdout: holdout(ep, entries, idx), Shadows: in.Shadows, Health: Health{Warnings: []string{}}}
	if r.Shadows == nil {
		r.Shadows = []shadow.Summary{}
	}
	if overflowed > 0 {
		r.Health.Warnings = append(r.Health.Warnings, fmt.Sprintf(
			"segments_capped: %d requests were served in segment %q because the endpoint has max_segments %d segments",
			overflowed, counters.OtherSegment, ep.Policy.SegmentCap()))
	}
	pol := ep.Policy.Bandit()
	// Common random numbers: the same counts give the same P(best),
	// expected loss and value remaining, look after look.
	rng := bandit.SeededBy(ep.Name+"\x00"+segment, pol.Prior, pol.MinShare, arms)
	draws := in.Draws
	if draws <= 0 {
		draws = Draws
	}
	an := bandit.Analyze(rng, pol.Prior, arms, draws)
	shares := make([]float64, len(arms))
	switch {
	case ep.Policy.LinearModel() != nil:
		trialShares(arms, shares)
	case len(policyShares) == len(arms):
		copy(shares, policyShares)
	default:
		pol.Shares(rng, arms, draws, shares)
	}
	var total uint64
	var armErrs map[string]map[string]uint64
	if errs != nil {
		armErrs = errs.Of(ep.Name)
	}
	for i, name := range ep.Arms {
		st := an.Arms[i]
		state := string(registry.Active)
		if ep.ArmStates[name] == registry.Paused {
			state = string(registry.Paused)
		} else if !arms[i].Active {
			state = Unavailable
		}
		total += arms[i].Trials
		r.Arms = append(r.Arms, Arm{Arm: name, State: state, Trials: arms[i].Trials, Successes: arms[i].Successes,
			Rate: st.Rate, CI95: [2]float64{st.CILow, st.CIHigh}, PBest: st.PBest,
			ExpectedLoss: st.ExpectedLoss, TrafficShare: shares[i], Errors: armErrs[name], Reason: ep.ArmReasons[name],
			RegretGap: st.RegretGap, MeanValue: meanValue(ep, arms[i])})
		if state == string(registry.Paused) && strings.HasPrefix(ep.ArmReasons[name], "paused by guardrail") {
			r.Health.Warnings = append(r.Health.Warnings, "paused_by_guardrail: "+name)
		}
		if r.Arms[i].Errors == nil {
			r.Arms[i].Errors = map[string]uint64{}
		}
	}
	r.Regret.ExpectedCumulative = an.ExpectedRegret
	linearCoefficients(ep, table, r.Arms)
	if op := in.OffPolicy; op != nil {
		q := segmentMeans(pol.Prior, entries)
		for i := range r.Arms {
			name := r.Arms[i].Arm
			if e := op.Arms[name]; e != nil {
				o := &OffPolicy{N: e.N, Served: e.Served, IPS: e.IPS, SNIPS: e.SNIPS, CI95: e.CI95}
				o.DR, o.DRCI95, _ = op.DR(name, func(seg string) float64 { return q(seg, name) })
				r.Arms[i].OffPolicy = o
			}
		}
		r.Health.SRMPValue = op.SRMPValue
		if op.SRMPValue != nil && *op.SRMPValue < SRMThreshold {
			r.Health.Warnings = append([]string{"sample_ratio_mismatch"}, r.Health.Warnings...)
		}
	}
	r.Decision = decide(ep, an, total)
	if total < ep.Policy.StopRule.MinTrials {
		r.Health.Warnings = append(r.Health.Warnings, "low_traffic")
	}
	return r
}

// trialShares writes each arm's share of the trials into out: the traffic
// share of a linear-thompson endpoint, whose policy's shares depend on each
// request's context vector (the logged propensities are per request).
func trialShares(arms []bandit.Arm, out []float64) {
	var total uint64
	for _, a := range arms {
		total += a.Trials
	}
	for i, a := range arms {
		if total > 0 {
			out[i] = float64(a.Trials) / float64(total)
		}
	}
}

// linearCoefficients fills in each arm's coefficients under a
// linear-thompson policy, fitted from the arm's current sums (the prior's,
// all 0, before any trial).
func linearCoefficients(ep *registry.Endpoint, table *counters.Table, rows []Arm) {
	m := ep.Policy.LinearModel()
	if m == nil || table == nil {
		return
	}
	names := m.Names()
	unit := make([]float64, len(names))
	for i := range rows {
		var sums []float64
		if c := table.LookupLinear(counters.LinKey{Endpoint: ep.Name, Arm: rows[i].Arm, Layout: m.Layout()}); c != nil {
			sums = c.Sums()
		}
		fit, err := bandit.FitLinear(len(names), ep.Policy.Lambda, sums)
		if err != nil {
			continue // corrupt sums: no coefficients rather than wrong ones
		}
		rows[i].Coefficients = make([]Coefficient, len(names))
		for j, name := range names {
			unit[j] = 1
			_, sd := fit.Score(unit)
			unit[j] = 0
			rows[i].Coefficients[j] = Coefficient{Name: name, Mean: fit.Mu[j], SD: ep.Policy.Noise * sd}
		}
	}
}

// segmentMeans returns the posterior mean click rate of an arm in a
// segment, from that segment's own cell (the prior's mean without one): the
// direct-method part of the doubly robust estimate.
func segmentMeans(prior bandit.Prior, entries []counters.Entry) func(segment, arm string) float64 {
	type cell struct{ segment, arm string }
	counts := make(map[cell]bandit.Arm, len(entries))
	for _, e := range entries {
		c := cell{e.Key.Segment, e.Key.Arm}
		a := counts[c]
		a.Trials += e.Trials
		a.Successes += e.SuccessCount()
		counts[c] = a
	}
	return func(segment, arm string) float64 {
		a, b := prior.Posterior(counts[cell{segment, arm}])
		return a / (a + b)
	}
}

// meanValue is an arm's MeanValue: on an endpoint with value rewards, its
// realised mean capped reward per trial in the reward's unit; nil on a
// click endpoint.
func meanValue(ep *registry.Endpoint, a bandit.Arm) *float64 {
	c := ep.Policy.Reward.ValueCap()
	if c == 0 {
		return nil
	}
	v := 0.0
	if a.Trials > 0 {
		v = min(a.Successes, float64(a.Trials)) * c / float64(a.Trials)
	}
	return &v
}

func decide(ep *registry.Endpoint, an bandit.Analysis, total uint64) Decision {
	d := Decision{Status: "keep_running", ValueRemaining: an.ValueRemaining}
	rule := ep.Policy.StopRule
	if an.Best < 0 || total < rule.MinTrials {
		return d
	}
	arm := ep.Arms[an.Best]
	switch {
	case an.Arms[an.Best].PBest >= rule.PBest:
		reason := "p_best"
		d.Status, d.Arm, d.Reason = "winner", &arm, &reason
	case an.ValueRemaining < rule.ValueRemaining:
		reason := "value_remaining"
		d.Status, d.Arm, d.Reason = "winner", &arm, &reason
	}
	return d
}
