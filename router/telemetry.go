package router

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

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

// predictSpanName names the span of a model call by backend type.
func predictSpanName(typ string) string {
	switch typ {
	case "embedded":
		return "embedded.predict"
	case "tfserving":
		return "tfserving.predict"
	case "onnx":
		return "onnx.predict"
	}
	return "backend.predict"
}

// endPredict records one model call on the request path.
func (r *Router) endPredict(ctx context.Context, span trace.Span, v *registry.Version, d time.Duration, err error) {
	r.met.BackendCall(ctx, v.Spec.Arm, v.Spec.Backend.Type, d)
	if span.IsRecording() {
		span.SetAttributes(telemetry.AttrArm.String(v.Spec.Arm), telemetry.AttrBackend.String(v.Spec.Backend.Type))
		if err != nil {
			telemetry.Fail(span, err, backend.Classify(err))
		}
	}
	span.End()
}

// observe records a finished recommend call of a known endpoint: its
// outcome under the arm the policy chose, its duration, and on the server
// span the endpoint, segment and arm that served.
func (r *Router) observe(ctx context.Context, start time.Time, ep *registry.Endpoint, segment string, chosen, served int, fellBack bool, err error) {
	arm, outcome := "none", telemetry.OutcomeOK
	if chosen >= 0 {
		arm = ep.Arms[chosen]
	}
	switch {
	case err != nil:
		outcome = telemetry.OutcomeError
	case fellBack:
		outcome = telemetry.OutcomeFallback
	}
	r.met.Recommend(ctx, ep.Name, arm, outcome, time.Since(start))
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(telemetry.AttrEndpoint.String(ep.Name), telemetry.AttrSegment.String(segment))
	if served >= 0 && err == nil {
		span.SetAttributes(telemetry.AttrArm.String(ep.Arms[served]), telemetry.AttrFallback.Bool(fellBack))
		if fellBack {
			span.SetAttributes(telemetry.AttrChosenArm.String(arm))
		}
	}
	if err != nil {
		class := "error"
		if fe := fault.As(err); fe != nil {
			class = fe.Code
		} else if ctx.Err() != nil {
			class = backend.Classify(ctx.Err())
		}
		telemetry.Fail(span, err, class)
	}
}
