package router

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/predlog"
)

// Observer learns what a recommend call did, after the fact: what serving
// a prediction leaves besides the trial and the token (the prediction log,
// the off-policy sums, metrics) goes through observers.
//
// Observe is called once per recommend call of a known endpoint, served or
// failed, on the request path after the response is built: it must be
// cheap, must not block, and may be called concurrently. The Outcome is
// passed by value so that observing allocates nothing; its slices are shared
// with the router and the response, to be read during Observe only.
type Observer interface {
	Observe(ctx context.Context, o Outcome)
}

// Tracer starts the spans of a recommend call's steps under the span of
// ctx; *telemetry.Telemetry is one. When ctx's span is not recording, Child
// should return ctx and a no-op span without allocating: it is called on
// every request.
type Tracer interface {
	Child(ctx context.Context, name string) (context.Context, trace.Span)
}

// Outcome is what one recommend call of a known endpoint did. ctx, given
// with it to Observe, carries the request's span (its trace ids).
type Outcome struct {
	Endpoint string
	// Segment is the segment the prediction was served and counted in
	// ("other" when it overflowed), or, when none was served, the one the
	// policy chose in.
	Segment string
	// Arms are the endpoint's arms; Chosen and Served index them.
	Arms []string
	// Shares are the policy's probability of each arm for this request
	// (certainty for a sticky assignment); nil when no arm was active.
	Shares []float64
	// Chosen is the arm the policy chose, -1 when no arm was active.
	Chosen int
	// Served is the arm that served, -1 when none did (Err is set).
	Served int
	// Propensity is the policy's probability of the arm that served (of
	// the chosen arm when none did).
	Propensity float64
	// Fallback: Served is not the policy's choice, which failed.
	Fallback bool
	// Sticky: the choice was the user's sticky assignment.
	Sticky bool
	// Pinned: the request pinned the arm (QA); the prediction belongs in
	// no statistic.
	Pinned bool
	// Batch: the request is one entry of a batch call, whose span (in
	// ctx) is the whole call's.
	Batch bool
	// Holdout: the request was held out and the endpoint's holdout arm
	// served it; the prediction is a trial of the holdout, not the
	// bandit's choice (Segment is counters.HoldoutSegment).
	Holdout bool
	// Trial: a trial was counted (trials are counted on requests).
	Trial bool
	// ShadowLogged: the prediction was shadowed, and its prediction log
	// record is written with its shadows' answers by the router's shadow
	// side (Options.ShadowLog), not by PredictionLogObserver.
	ShadowLogged bool
	// PredictionID is the signed prediction token; "" when none was served.
	PredictionID string
	// Time is the prediction's time, as its token says.
	Time time.Time
	// Items are the items served.
	Items []backend.Item
	// Latency is the whole call's, from the decoded request to the signed
	// response or the error.
	Latency time.Duration
	// Err is why the call failed; nil when an arm served.
	Err error

	calls  [maxCalls]Call
	ncalls int
}

// Calls are the model calls the recommend call made, in order: the chosen
// arm's, then a fallback's. A request whose inputs could not be built made
// none.
func (o *Outcome) Calls() []Call { return o.calls[:o.ncalls] }

// Call is one model call on the request path.
type Call struct {
	Arm     string
	Backend string        // the backend type
	Latency time.Duration // the model call's, without featurizing
	// Class is the arm's failure class (backend.Classify): "" when it
	// served, or when the request (its input) or its client was at fault.
	Class string
	Err   error
}

// PredictionLog receives a record of every served prediction; Add must not
// block. *predlog.Log is one.
type PredictionLog interface {
	Add(*predlog.Record)
}

// PredictionLogObserver writes every served prediction to a prediction
// log. Create it with NewPredictionLogObserver; it is safe for concurrent
// use when its log is.
type PredictionLogObserver struct {
	log PredictionLog
}

// NewPredictionLogObserver returns an observer adding to log.
func NewPredictionLogObserver(log PredictionLog) *PredictionLogObserver {
	return &PredictionLogObserver{log: log}
}

// Observe adds a record of o to the log when o served a prediction, unless
// the shadow side writes it (o.ShadowLogged).
func (p *PredictionLogObserver) Observe(_ context.Context, o Outcome) {
	if o.Served < 0 || o.ShadowLogged {
		return
	}
	p.log.Add(predictionRecord(&o))
}

// OffPolicySums keeps the sums behind the off-policy estimates;
// *offpolicy.Table is one.
type OffPolicySums interface {
	// Served records one prediction: arms are the endpoint's arms, shares
	// the policy's probability of each when it chose, served the index of
	// the arm that served and p its propensity.
	Served(endpoint, segment string, at time.Time, arms []string, shares []float64, served int, p float64)
}

// OffPolicyObserver adds every served prediction to the off-policy sums.
// Create it with NewOffPolicyObserver; it is safe for concurrent use when
// its sums are.
type OffPolicyObserver struct {
	sums OffPolicySums
}

// NewOffPolicyObserver returns an observer adding to sums.
func NewOffPolicyObserver(sums OffPolicySums) *OffPolicyObserver {
	return &OffPolicyObserver{sums: sums}
}

// Observe adds o to the sums when o served a prediction the policy chose
// (not a pinned one, nor a held-out one: neither is the bandit's choice, so
// neither belongs in its estimates or its sample-ratio check).
func (p *OffPolicyObserver) Observe(_ context.Context, o Outcome) {
	if o.Served < 0 || o.Pinned || o.Holdout {
		return
	}
	p.sums.Served(o.Endpoint, o.Segment, o.Time, o.Arms, o.Shares, o.Served, o.Propensity)
}
