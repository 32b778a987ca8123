// Package telemetry is the gateway's one place for OpenTelemetry: the meter
// provider behind GET /metrics (and OTLP when configured), the tracer
// provider configured from the standard OTEL_* environment variables, the
// instruments the request path records into, the transports' tracing
// middleware and a slog handler that stamps log lines with the active
// trace.
//
// A Telemetry is built once (in cmd) and handed to the packages that record
// into it. New sets no otel globals: every provider and propagator is
// passed explicitly, so several gateways in one process (tests) never share
// state. (LogErrors, called once by main, sets otel's error handler.)
//
// Cost: with tracing off (no OTLP endpoint, the default) the tracer is a
// no-op, no span is ever started, and the transports' tracing middleware is
// not installed; metric recording uses attribute sets cached per label
// combination, so the recommend path allocates nothing for telemetry.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of the gateway's own instruments
// and spans.
const ScopeName = "github.com/modelgate/modelgate"

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "modelgate"

// Config is what New needs beyond the environment. The zero value reads the
// process environment and exports over OTLP only when an endpoint is set.
type Config struct {
	// Getenv looks up OTEL_* variables; nil means os.Getenv. The OTLP
	// exporters themselves still read their finer settings (headers,
	// certificates, timeouts, compression) from the process environment.
	Getenv func(string) string
	// ServiceVersion is service.version on every span and metric export.
	ServiceVersion string
	// SpanExporter, when set, receives every span instead of an OTLP
	// exporter, and turns tracing on without an endpoint (tests, benchmarks).
	SpanExporter sdktrace.SpanExporter
	// SyncExport exports each span as it ends rather than in batches
	// (tests that read the exporter right after a call).
	SyncExport bool
}

// Telemetry holds the providers and instruments. Build it with New; a nil
// *Telemetry is valid and records nothing. Safe for concurrent use.
type Telemetry struct {
	// Metrics are the gateway's instruments.
	Metrics *Metrics

	mp        *sdkmetric.MeterProvider
	meter     metric.Meter
	promReg   *prometheus.Registry
	sdkTP     *sdktrace.TracerProvider // nil when tracing is off
	tp        trace.TracerProvider
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	exporters []string
	regs      []metric.Registration
}

// New builds the providers from cfg and the OTEL_* environment:
//
//   - metrics always feed the Prometheus handler (MetricsHandler); with
//     OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
//     they are also pushed over OTLP (unless OTEL_METRICS_EXPORTER=none);
//   - traces are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (unless
//     OTEL_TRACES_EXPORTER=none), with the protocol of
//     OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL (grpc or http/protobuf,
//     the default) and the sampler of OTEL_TRACES_SAMPLER[_ARG]; otherwise
//     the tracer provider is a no-op and nothing connects anywhere;
//   - OTEL_SDK_DISABLED=true turns tracing and OTLP off (GET /metrics stays).
//
// Exporters connect lazily: an unreachable collector never fails New.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	env := cfg.Getenv
	if env == nil {
		env = os.Getenv
	}
	get := func(k string) string { return strings.TrimSpace(env(k)) }
	disabled := strings.EqualFold(get("OTEL_SDK_DISABLED"), "true")

	name := get("OTEL_SERVICE_NAME")
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []resource.Option{resource.WithFromEnv(), resource.WithAttributes(semconv.ServiceName(name))}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(cfg.ServiceVersion)))
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}

	t := &Telemetry{prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	ok := false
	defer func() {
		if !ok {
			_ = t.Shutdown(context.Background())
		}
	}()

	// Metrics: the Prometheus exporter on a registry of our own (never the
	// global one), with the contract's names as they are: the instruments
	// already carry the Prometheus suffixes, which the translation keeps
	// without doubling; no scope labels and no target_info series.
	t.promReg = prometheus.NewRegistry()
	pe, err := otelprom.New(otelprom.WithRegisterer(t.promReg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(pe)}
	traceEP, traceOwn := endpoint(get, "TRACES")
	tracing := cfg.SpanExporter != nil || (traceEP != "" && !disabled && !strings.EqualFold(get("OTEL_TRACES_EXPORTER"), "none"))
	if !tracing {
		// Exemplars link measurements to sampled spans; without tracing
		// there are none, so skip the per-measurement check.
		mopts = append(mopts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	t.exporters = append(t.exporters, "prometheus")
	if ep, sig := endpoint(get, "METRICS"); ep != "" && !disabled && !strings.EqualFold(get("OTEL_METRICS_EXPORTER"), "none") {
		exp, proto, err := metricExporter(ctx, get, ep, sig)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		t.exporters = append(t.exporters, "otlp-metrics/"+proto)
	}
	t.mp = sdkmetric.NewMeterProvider(mopts...)
	t.meter = t.mp.Meter(ScopeName)
	if t.Metrics, err = newMetrics(t.meter); err != nil {
		return nil, err
	}
	if err := runtime.Start(runtime.WithMeterProvider(t.mp)); err != nil {
		return nil, fmt.Errorf("telemetry: runtime metrics: %w", err)
	}

	// Traces.
	var spanExp sdktrace.SpanExporter
	switch {
	case cfg.SpanExporter != nil:
		spanExp = cfg.SpanExporter
		t.exporters = append(t.exporters, "traces/custom")
	case tracing:
		exp, proto, err := traceExporter(ctx, get, traceEP, traceOwn)
		if err != nil {
			return nil, err
		}
		spanExp = exp
		t.exporters = append(t.exporters, "otlp-traces/"+proto)
	}
	if spanExp == nil {
		t.tp = noop.NewTracerProvider()
	} else {
		sampler, err := samplerFromEnv(get)
		if err != nil {
			return nil, err
		}
		proc := sdktrace.NewBatchSpanProcessor(spanExp)
		if cfg.SyncExport {
			proc = sdktrace.NewSimpleSpanProcessor(spanExp)
		}
		t.sdkTP = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(proc))
		t.tp = t.sdkTP
	}
	t.tracer = t.tp.Tracer(ScopeName)
	ok = true
	return t, nil
}

// endpoint returns the OTLP endpoint for a signal ("TRACES", "METRICS"):
// the signal's own variable, else the generic one, and whether it was the
// signal's own (used as is) or the generic one (the signal's path is
// appended for HTTP).
func endpoint(get func(string) string, signal string) (string, bool) {
	if ep := get("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"); ep != "" {
		return ep, true
	}
	return get("OTEL_EXPORTER_OTLP_ENDPOINT"), false
}

// protocol is the OTLP protocol for a signal: grpc or http/protobuf (the
// specification's default).
func protocol(get func(string) string, signal string) (string, error) {
	p := get("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if p == "" {
		p = get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch p {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	}
	return "", fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported: use grpc or http/protobuf", p)
}

// withScheme gives an endpoint without a scheme (host:port) one, so the
// exporters can parse it as a URL: http when
// OTEL_EXPORTER_OTLP[_SIGNAL]_INSECURE is true, else https.
func withScheme(get func(string) string, ep, signal string) string {
	if strings.Contains(ep, "://") {
		return ep
	}
	insecure := get("OTEL_EXPORTER_OTLP_" + signal + "_INSECURE")
	if insecure == "" {
		insecure = get("OTEL_EXPORTER_OTLP_INSECURE")
	}
	if strings.EqualFold(insecure, "true") {
		return "http://" + ep
	}
	return "https://" + ep
}

func traceExporter(ctx context.Context, get func(string) string, ep string, signalOwn bool) (sdktrace.SpanExporter, string, error) {
	proto, err := protocol(get, "TRACES")
	if err != nil {
		return nil, "", err
	}
	ep = withScheme(get, ep, "TRACES")
	var exp sdktrace.SpanExporter
	if proto == "grpc" {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(ep))
	} else {
		if !signalOwn {
			ep = strings.TrimRight(ep, "/") + "/v1/traces"
		}
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(ep))
	}
	if err != nil {
		return nil, "", fmt.Errorf("telemetry: OTLP trace exporter for %s: %w", ep, err)
	}
	return exp, proto, nil
}

func metricExporter(ctx context.Context, get func(string) string, ep string, signalOwn bool) (sdkmetric.Exporter, string, error) {
	proto, err := protocol(get, "METRICS")
	if err != nil {
		return nil, "", err
	}
	ep = withScheme(get, ep, "METRICS")
	var exp sdkmetric.Exporter
	if proto == "grpc" {
		exp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpointURL(ep))
	} else {
		if !signalOwn {
			ep = strings.TrimRight(ep, "/") + "/v1/metrics"
		}
		exp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(ep))
	}
	if err != nil {
		return nil, "", fmt.Errorf("telemetry: OTLP metric exporter for %s: %w", ep, err)
	}
	return exp, proto, nil
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as
// the specification names them; the default is parentbased_always_on.
func samplerFromEnv(get func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(get("OTEL_TRACES_SAMPLER"))
	arg := get("OTEL_TRACES_SAMPLER_ARG")
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG %q is not a ratio in [0, 1]", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER %q is not supported: use always_on, always_off, traceidratio or their parentbased_ forms", name)
}

// Tracing reports whether spans are recorded and exported. False for a nil
// Telemetry.
func (t *Telemetry) Tracing() bool { return t != nil && t.sdkTP != nil }

// Exporters names the exporters that run: "prometheus" (pull, at GET
// /metrics) always, then "otlp-metrics/PROTOCOL", "otlp-traces/PROTOCOL"
// or "traces/custom" when configured. Nothing else connects anywhere.
func (t *Telemetry) Exporters() []string {
	if t == nil {
		return nil
	}
	return append([]string(nil), t.exporters...)
}

// TracerProvider is the tracer provider: a no-op one when tracing is off.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	return t.tp
}

// Propagator is the W3C trace-context and baggage propagator used on every
// transport.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return propagation.TraceContext{}
	}
	return t.prop
}

// Meter is the gateway's meter, for instruments beyond Metrics (a no-op
// one for a nil Telemetry).
func (t *Telemetry) Meter() metric.Meter {
	if t == nil {
		return metricnoop.NewMeterProvider().Meter(ScopeName)
	}
	return t.meter
}

// MetricsHandler serves the metrics in the Prometheus text format. t must
// not be nil.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.promReg, promhttp.HandlerOpts{})
}

// ForceFlush exports the spans and metrics recorded so far.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.sdkTP != nil {
		errs = append(errs, t.sdkTP.ForceFlush(ctx))
	}
	if t.mp != nil {
		errs = append(errs, t.mp.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes and stops the exporters. Call it once, after the
// listeners stopped; recording afterwards is a no-op.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var errs []error
	for _, r := range t.regs {
		errs = append(errs, r.Unregister())
	}
	t.regs = nil
	if t.sdkTP != nil {
		errs = append(errs, t.sdkTP.Shutdown(ctx))
	}
	if t.mp != nil {
		errs = append(errs, t.mp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
