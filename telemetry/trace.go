package telemetry

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Span attribute keys of the gateway's own spans.
const (
	AttrEndpoint   = attribute.Key("modelgate.endpoint")
	AttrSegment    = attribute.Key("modelgate.segment")
	AttrArm        = attribute.Key("modelgate.arm")
	AttrPropensity = attribute.Key("modelgate.propensity")
	AttrBackend    = attribute.Key("modelgate.backend")
	AttrFallback   = attribute.Key("modelgate.fallback")
	AttrChosenArm  = attribute.Key("modelgate.chosen_arm")
	AttrErrorClass = attribute.Key("modelgate.error.class")
)

// noSpan is what Start and Child return when they start nothing: a
// zero-size value, so returning it allocates nothing.
var noSpan trace.Span = noop.Span{}

// Start starts a span as a child of ctx's span, or a root span, when
// tracing is on; otherwise it returns ctx and a no-op span without
// allocating. Use it for work that may start a trace (store flushes).
func (t *Telemetry) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !t.Tracing() {
		return ctx, noSpan
	}
	return t.tracer.Start(ctx, name, opts...)
}

// Child starts a span under ctx's span only when that span is recording
// (a sampled server span); otherwise it returns ctx and a no-op span
// without allocating. Use it on the request path.
func (t *Telemetry) Child(ctx context.Context, name string) (context.Context, trace.Span) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	return t.tracer.Start(ctx, name)
}

// Fail records err on span with its class (modelgate.error.class) and
// marks the span failed. A no-op on a span that is not recording.
func Fail(span trace.Span, err error, class string) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetAttributes(AttrErrorClass.String(class))
	span.SetStatus(codes.Error, err.Error())
}

// untraced are the paths no span is started for: probes and scrapes.
func untraced(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// GinMiddleware continues an incoming W3C traceparent and wraps each HTTP
// request in a server span named "METHOD route" (e.g. "POST
// /v1/endpoints/:endpoint/recommend"), except /healthz, /readyz and
// /metrics. Install it first, and only when Tracing is true: with tracing
// off it would cost allocations for spans nobody records.
func (t *Telemetry) GinMiddleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		r := c.Request
		if untraced(r.URL.Path) {
			c.Next()
			return
		}
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		route := c.FullPath()
		name := r.Method
		if route != "" {
			name += " " + route
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path),
			semconv.URLScheme(scheme), semconv.ServerAddress(r.Host)}
		if route != "" {
			attrs = append(attrs, semconv.HTTPRoute(route))
		}
		if ua := r.UserAgent(); ua != "" {
			attrs = append(attrs, semconv.UserAgentOriginal(ua))
		}
		ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		c.Request = r.WithContext(ctx)
		c.Next()
		st := c.Writer.Status()
		span.SetAttributes(semconv.HTTPResponseStatusCode(st))
		if st >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(st))
		}
	}
}

// GRPCServerOptions are the gRPC server options that continue an incoming
// traceparent (metadata) and wrap each call of the gateway's own services
// in a server span; none when tracing is off.
func (t *Telemetry) GRPCServerOptions() []grpc.ServerOption {
	if !t.Tracing() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return strings.HasPrefix(info.FullMethodName, "/modelgate.")
		})))}
}

// PredictMethod is the TF Serving call that carries the trace on to TF
// Serving.
const PredictMethod = "/tensorflow.serving.PredictionService/Predict"

// GRPCDialOptions are the dial options of the connections to TF Serving:
// a client span around each Predict, whose traceparent goes to TF Serving
// in the call's metadata. Health checks and registration calls are not
// traced. None when tracing is off.
func (t *Telemetry) GRPCDialOptions() []grpc.DialOption {
	if !t.Tracing() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool { return info.FullMethodName == PredictMethod })))}
}
