package router

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/telemetry"
)

// The helpers below keep the request path free of telemetry allocations
// when tracing is off: spans are no-op values then, and attributes are
// built only for a span that records.

// endChoose ends the choose span with the policy's choice.
func endChoose(span trace.Span, ep *registry.Endpoint, segment string, chosen int, prop float64) {
	if span.IsRecording() {
		arm := "none"
		if chosen >= 0 {
			arm = ep.Arms[chosen]
		}
		span.SetAttributes(telemetry.AttrEndpoint.String(ep.Name), telemetry.AttrSegment.String(segment),
			telemetry.AttrArm.String(arm), telemetry.AttrPropensity.Float64(prop))
	}
	span.End()
}

// endFeaturize ends the featurize span of one arm's inputs.
func endFeaturize(span trace.Span, v *registry.Version, err error) {
	if span.IsRecording() {
		span.SetAttributes(telemetry.AttrArm.String(v.Spec.Arm))
		telemetry.Fail(span, err, "invalid_feature")
	}
	span.End()
}

// endPredict ends the span of one model call.
func endPredict(span trace.Span, v *registry.Version, err error) {
	if span.IsRecording() {
		span.SetAttributes(telemetry.AttrArm.String(v.Spec.Arm), telemetry.AttrBackend.String(v.Spec.Backend.Type))
		if err != nil {
			telemetry.Fail(span, err, backend.Classify(err))
		}
	}
	span.End()
}

// noTracer traces nothing: a router's Tracer when Options has none.
type noTracer struct{}

func (noTracer) Child(ctx context.Context, _ string) (context.Context, trace.Span) {
	return ctx, noop.Span{}
}

// TelemetryObserver records recommend calls as metrics (calls by outcome
// under the arm the policy chose, their duration, every model call and arm
// failure, trials) and, on a recording request span, the endpoint, segment
// and arm that served. Its zero value records spans only; it is safe for
// concurrent use.
type TelemetryObserver struct {
	met *telemetry.Metrics
}

// NewTelemetryObserver returns an observer recording into tel's metrics;
// tel may be nil.
func NewTelemetryObserver(tel *telemetry.Telemetry) *TelemetryObserver {
	if tel == nil {
		return &TelemetryObserver{}
	}
	return &TelemetryObserver{met: tel.Metrics}
}

// Observe records one recommend call. It allocates nothing once each label
// combination has been seen, nor when the request's span is not recording.
func (t *TelemetryObserver) Observe(ctx context.Context, o Outcome) {
	for _, c := range o.Calls() {
		t.met.BackendCall(ctx, c.Arm, c.Backend, c.Latency)
		if c.Class != "" {
			t.met.ArmError(ctx, o.Endpoint, c.Arm, c.Class)
		}
	}
	if o.Trial {
		t.met.Trial(ctx, o.Endpoint, o.Arms[o.Served], 1)
	}
	arm, outcome := "none", telemetry.OutcomeOK
	if o.Chosen >= 0 {
		arm = o.Arms[o.Chosen]
	}
	switch {
	case o.Err != nil:
		outcome = telemetry.OutcomeError
	case o.Fallback:
		outcome = telemetry.OutcomeFallback
	}
	t.met.Recommend(ctx, o.Endpoint, arm, outcome, o.Latency)
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if o.Batch {
		// The span is the batch call's: each entry is an event on it, and
		// one entry's failure does not fail the call.
		attrs := []attribute.KeyValue{telemetry.AttrSegment.String(o.Segment)}
		if o.Served >= 0 && o.Err == nil {
			attrs = append(attrs, telemetry.AttrArm.String(o.Arms[o.Served]), telemetry.AttrFallback.Bool(o.Fallback))
		} else if o.Err != nil {
			attrs = append(attrs, attribute.String("error", o.Err.Error()))
		}
		span.AddEvent("batch.entry", trace.WithAttributes(attrs...))
		span.SetAttributes(telemetry.AttrEndpoint.String(o.Endpoint))
		return
	}
	span.SetAttributes(telemetry.AttrEndpoint.String(o.Endpoint), telemetry.AttrSegment.String(o.Segment))
	if o.Served >= 0 && o.Err == nil {
		span.SetAttributes(telemetry.AttrArm.String(o.Arms[o.Served]), telemetry.AttrFallback.Bool(o.Fallback))
		if o.Fallback {
			span.SetAttributes(telemetry.AttrChosenArm.String(arm))
		}
	}
	if o.Err != nil {
		class := "error"
		if fe := fault.As(o.Err); fe != nil {
			class = fe.Code
		} else if ctx.Err() != nil {
			class = backend.Classify(ctx.Err())
		}
		telemetry.Fail(span, o.Err, class)
	}
}
