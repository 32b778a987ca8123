package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names, exactly as GET /metrics shows them. The instruments carry
// these names over OTLP too, so a collector's Prometheus exporter (which
// adds the same suffixes only when missing) shows the same series.
const (
	RecommendRequests  = "modelgate_recommend_requests_total"
	RecommendDuration  = "modelgate_recommend_duration_seconds"
	BackendDuration    = "modelgate_backend_duration_seconds"
	ArmErrors          = "modelgate_arm_errors_total"
	Trials             = "modelgate_trials_total"
	Successes          = "modelgate_successes_total"
	RewardSuccesses    = "modelgate_reward_successes_total"
	FeedbackEvents     = "modelgate_feedback_events_total"
	TrafficShare       = "modelgate_traffic_share"
	PBest              = "modelgate_p_best"
	StoreFlushDuration = "modelgate_store_flush_seconds"
	StoreFlushErrors   = "modelgate_store_flush_errors_total"
	PendingTrials      = "modelgate_pending_trials"
	StoreUp            = "modelgate_store_up"
	StoreWALBatches    = "modelgate_store_wal_batches"
	StoreWALBytes      = "modelgate_store_wal_bytes"
	DecisionChanges    = "modelgate_decision_changes_total"
	PredLogDropped     = "modelgate_prediction_log_dropped_total"
)

// Outcomes of a recommend call, the outcome label of RecommendRequests.
const (
	OutcomeOK       = "ok"       // the arm the policy chose served
	OutcomeFallback = "fallback" // the chosen arm failed and another served
	OutcomeError    = "error"    // the call failed
)

// DurationBuckets are the histogram bounds, in seconds, for a service whose
// own work is sub-millisecond and whose backends answer in milliseconds:
// 50 µs to 5 s.
var DurationBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// Metrics are the gateway's instruments. Record through the methods, which
// cache each label combination's attribute set so recording allocates
// nothing; the instruments are exported for anything the methods do not
// cover. A nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	Requests          metric.Int64Counter
	Duration          metric.Float64Histogram
	Backend           metric.Float64Histogram
	ArmErrors         metric.Int64Counter
	Trials            metric.Int64Counter
	Successes         metric.Int64Counter
	RewardSuccesses   metric.Float64Counter
	Feedback          metric.Int64Counter
	StoreFlush        metric.Float64Histogram
	StoreFlushErrors  metric.Int64Counter
	TrafficShare      metric.Float64ObservableGauge
	PBest             metric.Float64ObservableGauge
	PendingTrialCount metric.Int64ObservableGauge
	StoreUpGauge      metric.Int64ObservableGauge
	WALBatches        metric.Int64ObservableGauge
	WALBytes          metric.Int64ObservableGauge
	DecisionChange    metric.Int64Counter
	PredLogDropped    metric.Int64ObservableCounter

	attrs attrCache
}

func newMetrics(m metric.Meter) (*Metrics, error) {
	var (
		x    = &Metrics{}
		errs []error
		err  error
	)
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(DurationBuckets...))
		errs = append(errs, err)
		return h
	}
	x.Requests = counter(RecommendRequests, "Recommend calls by endpoint, the arm the policy chose (none when no arm could be chosen) and outcome (ok, fallback, error).")
	x.Duration = hist(RecommendDuration, "Time the gateway spent on a recommend call of a known endpoint, from decoded request to signed response.")
	x.Backend = hist(BackendDuration, "Duration of one model call on the request path, by arm and backend type.")
	x.ArmErrors = counter(ArmErrors, "Failed model calls by endpoint, arm and class (unavailable, deadline, bad_output, other).")
	x.Trials = counter(Trials, "Bandit trials counted by endpoint and arm (summed over segments).")
	x.Successes = counter(Successes, "Bandit successes (first click of a prediction) by endpoint and arm (summed over segments).")
	x.RewardSuccesses, err = m.Float64Counter(RewardSuccesses, metric.WithDescription(
		"Fractional successes of value rewards (each prediction's capped reward ÷ cap, as it grows) by endpoint and arm (summed over segments)."))
	errs = append(errs, err)
	x.Feedback = counter(FeedbackEvents, "Feedback events by result: accepted, duplicate, or the rejection code.")
	x.StoreFlush = hist(StoreFlushDuration, "Duration of one flush of pending trial counts to the store.")
	x.StoreFlushErrors = counter(StoreFlushErrors, "Flushes of pending trial counts that failed (the counts are kept for the next flush).")
	x.TrafficShare, err = m.Float64ObservableGauge(TrafficShare,
		metric.WithDescription("Probability that the endpoint's policy picks the arm now, across segments; recomputed every few seconds, not when scraped."))
	errs = append(errs, err)
	x.PBest, err = m.Float64ObservableGauge(PBest,
		metric.WithDescription("Posterior probability that the arm has the best success rate of the endpoint, across segments; recomputed every few seconds, not when scraped."))
	errs = append(errs, err)
	x.PendingTrialCount, err = m.Int64ObservableGauge(PendingTrials,
		metric.WithDescription("Trials counted in memory and not yet flushed to the store."))
	errs = append(errs, err)
	x.StoreUpGauge, err = m.Int64ObservableGauge(StoreUp,
		metric.WithDescription("1 while the shared store (Redis) answers, 0 while writes go to the local write-ahead log; absent with the embedded store."))
	errs = append(errs, err)
	x.WALBatches, err = m.Int64ObservableGauge(StoreWALBatches,
		metric.WithDescription("Write batches in the local write-ahead log waiting for Redis."))
	errs = append(errs, err)
	x.WALBytes, err = m.Int64ObservableGauge(StoreWALBytes,
		metric.WithDescription("Bytes of the local write-ahead log waiting for Redis."))
	errs = append(errs, err)
	x.PredLogDropped, err = m.Int64ObservableCounter(PredLogDropped,
		metric.WithDescription("Prediction log records dropped, by reason: queue_full (the writer fell behind) or write_failed (the file could not be written, rotated or reopened)."))
	errs = append(errs, err)
	x.DecisionChange = counter(DecisionChanges, "Changes of an experiment's stop-rule decision (keep_running, winner and which arm), by endpoint.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	// A label-less counter is shown from the start, at 0, so alerts on its
	// increase work before its first event.
	x.StoreFlushErrors.Add(context.Background(), 0)
	return x, nil
}

// Recommend records one recommend call of a known endpoint: its outcome
// under the arm the policy chose ("none" when none could be chosen) and its
// duration.
func (m *Metrics) Recommend(ctx context.Context, endpoint, arm, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.Requests.Add(ctx, 1, m.attrs.get(attrKey{kind: kindRequest, a: endpoint, b: arm, c: outcome}).add...)
	m.Duration.Record(ctx, d.Seconds(), m.attrs.get(attrKey{kind: kindEndpoint, a: endpoint}).rec...)
}

// BackendCall records the duration of one model call on the request path,
// failed or not.
func (m *Metrics) BackendCall(ctx context.Context, arm, backend string, d time.Duration) {
	if m == nil {
		return
	}
	m.Backend.Record(ctx, d.Seconds(), m.attrs.get(attrKey{kind: kindBackend, a: arm, b: backend}).rec...)
}

// ArmError counts one failed model call of an arm by its class.
func (m *Metrics) ArmError(ctx context.Context, endpoint, arm, class string) {
	if m == nil {
		return
	}
	m.ArmErrors.Add(ctx, 1, m.attrs.get(attrKey{kind: kindArmError, a: endpoint, b: arm, c: class}).add...)
}

// Trial counts n trials of an arm.
func (m *Metrics) Trial(ctx context.Context, endpoint, arm string, n int64) {
	if m == nil || n == 0 {
		return
	}
	m.Trials.Add(ctx, n, m.attrs.get(attrKey{kind: kindArm, a: endpoint, b: arm}).add...)
}

// Success counts n successes of an arm.
func (m *Metrics) Success(ctx context.Context, endpoint, arm string, n int64) {
	if m == nil || n == 0 {
		return
	}
	m.Successes.Add(ctx, n, m.attrs.get(attrKey{kind: kindArm, a: endpoint, b: arm}).add...)
}

// RewardSuccess counts x fractional successes of value rewards of an arm.
func (m *Metrics) RewardSuccess(ctx context.Context, endpoint, arm string, x float64) {
	if m == nil || !(x > 0) {
		return
	}
	m.RewardSuccesses.Add(ctx, x, m.attrs.get(attrKey{kind: kindArm, a: endpoint, b: arm}).add...)
}

// FeedbackEvents counts n feedback events with a result: "accepted",
// "duplicate" or a rejection code.
func (m *Metrics) FeedbackEvents(ctx context.Context, result string, n int64) {
	if m == nil || n == 0 {
		return
	}
	m.Feedback.Add(ctx, n, m.attrs.get(attrKey{kind: kindResult, a: result}).add...)
}

// Flush records one flush of pending trials to the store.
func (m *Metrics) Flush(ctx context.Context, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.StoreFlush.Record(ctx, d.Seconds())
	if err != nil {
		m.StoreFlushErrors.Add(ctx, 1)
	}
}

// ArmStat is one arm's policy share and P(best) across the segments of an
// endpoint, as the gauges report them.
type ArmStat struct {
	Endpoint, Arm       string
	TrafficShare, PBest float64
}

// Sources give the gauges when metrics are collected (a scrape of GET
// /metrics or an OTLP export), never on the request path. They must be
// cheap reads: a scrape needs no key, so anything costly belongs in a loop
// off the scrape path whose result they return. Any may be nil.
type Sources struct {
	// Arms lists every arm of every endpoint.
	Arms func(context.Context) []ArmStat
	// PendingTrials is the number of trials not yet flushed to the store.
	PendingTrials func() int64
	// Store, when set, is the shared store's state: up, and its
	// write-ahead log backlog.
	Store func() (up bool, walBatches int, walBytes int64)
	// PredictionLog, when set, is the count of prediction log records
	// dropped since the start, by reason.
	PredictionLog func() (queueFull, writeFailed int64)
}

// Observe registers the gauges' sources. Call it once, when the services
// they read are built.
func (t *Telemetry) Observe(src Sources) error {
	if t == nil {
		return nil
	}
	m := t.Metrics
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if src.Arms != nil {
			for _, a := range src.Arms(ctx) {
				opt := metric.WithAttributeSet(attribute.NewSet(attribute.String("endpoint", a.Endpoint), attribute.String("arm", a.Arm)))
				o.ObserveFloat64(m.TrafficShare, a.TrafficShare, opt)
				o.ObserveFloat64(m.PBest, a.PBest, opt)
			}
		}
		if src.PendingTrials != nil {
			o.ObserveInt64(m.PendingTrialCount, src.PendingTrials())
		}
		if src.Store != nil {
			up, batches, bytes := src.Store()
			v := int64(0)
			if up {
				v = 1
			}
			o.ObserveInt64(m.StoreUpGauge, v)
			o.ObserveInt64(m.WALBatches, int64(batches))
			o.ObserveInt64(m.WALBytes, bytes)
		}
		if src.PredictionLog != nil {
			full, failed := src.PredictionLog()
			o.ObserveInt64(m.PredLogDropped, full, metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "queue_full"))))
			o.ObserveInt64(m.PredLogDropped, failed, metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "write_failed"))))
		}
		return nil
	}, m.TrafficShare, m.PBest, m.PendingTrialCount, m.StoreUpGauge, m.WALBatches, m.WALBytes, m.PredLogDropped)
	if err != nil {
		return fmt.Errorf("telemetry: gauges: %w", err)
	}
	t.regs = append(t.regs, reg)
	return nil
}

// The label sets of the instruments, by kind.
const (
	kindRequest  uint8 = iota // endpoint, arm, outcome
	kindEndpoint              // endpoint
	kindBackend               // arm, backend
	kindArmError              // endpoint, arm, class
	kindArm                   // endpoint, arm
	kindResult                // result
)

var labelNames = [...][]string{
	kindRequest:  {"endpoint", "arm", "outcome"},
	kindEndpoint: {"endpoint"},
	kindBackend:  {"arm", "backend"},
	kindArmError: {"endpoint", "arm", "class"},
	kindArm:      {"endpoint", "arm"},
	kindResult:   {"result"},
}

type attrKey struct {
	kind    uint8
	a, b, c string
}

type attrOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// attrCache maps label values to their measurement options. Reads are one
// atomic load and one map lookup, with no lock and no allocation; a new
// combination copies the map under a lock. Label values come from the
// registry (endpoints, arms), fixed classes and codes, so the map stays
// small.
type attrCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[attrKey]*attrOpts]
}

func (c *attrCache) get(k attrKey) *attrOpts {
	if m := c.m.Load(); m != nil {
		if o, ok := (*m)[k]; ok {
			return o
		}
	}
	return c.add(k)
}

func (c *attrCache) add(k attrKey) *attrOpts {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if o, ok := (*old)[k]; ok {
			return o
		}
	}
	vals := [3]string{k.a, k.b, k.c}
	names := labelNames[k.kind]
	kvs := make([]attribute.KeyValue, len(names))
	for i, n := range names {
		kvs[i] = attribute.String(n, vals[i])
	}
	opt := metric.WithAttributeSet(attribute.NewSet(kvs...))
	o := &attrOpts{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
	n := make(map[attrKey]*attrOpts, 1+lenOf(old))
	if old != nil {
		for kk, v := range *old {
			n[kk] = v
		}
	}
	n[k] = o
	c.m.Store(&n)
	return o
}

func lenOf(m *map[attrKey]*attrOpts) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// DecisionChanged counts a change of an endpoint's stop-rule decision.
func (t *Telemetry) DecisionChanged(ctx context.Context, endpoint string) {
	if t == nil {
		return
	}
	t.Metrics.DecisionChange.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", endpoint)))
}
