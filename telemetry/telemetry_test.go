package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func newTel(t *testing.T, cfg Config) *Telemetry {
	t.Helper()
	tel, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The OTLP endpoints of these tests do not exist: do not wait on them.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel
}

// The OTEL_* variables decide which exporters run; with none set, only the
// Prometheus handler exists, the tracer provider is a no-op and no
// transport gets a tracing hook: nothing connects anywhere.
func TestExportersFromEnvironment(t *testing.T) {
	const ep = "http://127.0.0.1:1"
	cases := []struct {
		name      string
		env       func(string) string
		exporters []string
		tracing   bool
	}{
		{"no OTEL variables", env(), []string{"prometheus"}, false},
		{"endpoint, default protocol", env("OTEL_EXPORTER_OTLP_ENDPOINT", ep),
			[]string{"prometheus", "otlp-metrics/http/protobuf", "otlp-traces/http/protobuf"}, true},
		{"endpoint over gRPC", env("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_INSECURE", "true"),
			[]string{"prometheus", "otlp-metrics/grpc", "otlp-traces/grpc"}, true},
		{"traces only", env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ep+"/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
			[]string{"prometheus", "otlp-traces/http/protobuf"}, true},
		{"metrics only", env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", ep, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
			[]string{"prometheus", "otlp-metrics/grpc"}, false},
		{"traces exporter none", env("OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_TRACES_EXPORTER", "none"),
			[]string{"prometheus", "otlp-metrics/http/protobuf"}, false},
		{"SDK disabled", env("OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_SDK_DISABLED", "true"), []string{"prometheus"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tel := newTel(t, Config{Getenv: tc.env})
			if got := tel.Exporters(); !slices.Equal(got, tc.exporters) {
				t.Errorf("exporters %v, want %v", got, tc.exporters)
			}
			if tel.Tracing() != tc.tracing {
				t.Errorf("Tracing() = %v, want %v", tel.Tracing(), tc.tracing)
			}
			_, isNoop := tel.TracerProvider().(noop.TracerProvider)
			hooks := len(tel.GRPCServerOptions()) + len(tel.GRPCDialOptions())
			if isNoop == tc.tracing || (hooks > 0) != tc.tracing {
				t.Errorf("noop tracer provider %v, transport hooks %d, with tracing %v", isNoop, hooks, tc.tracing)
			}
			ctx, span := tel.Start(context.Background(), "x")
			if span.IsRecording() != tc.tracing || (ctx == context.Background()) == tc.tracing {
				t.Errorf("Start recording %v, want %v", span.IsRecording(), tc.tracing)
			}
			span.End()
		})
	}
}

func TestBadEnvironment(t *testing.T) {
	cases := []struct{ name, key, val, want string }{
		{"protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"sampler", "OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"},
		{"sampler ratio", "OTEL_TRACES_SAMPLER_ARG", "2", "OTEL_TRACES_SAMPLER_ARG"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER", "traceidratio", tc.key, tc.val)
			_, err := New(context.Background(), Config{Getenv: e})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestSampler(t *testing.T) {
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true})
	cases := []struct {
		sampler, arg string
		// want: recording for a root span, under a sampled parent, under an unsampled one
		root, underSampled, underUnsampled bool
	}{
		{"", "", true, true, false},
		{"always_on", "", true, true, true},
		{"always_off", "", false, false, false},
		{"parentbased_always_off", "", false, true, false},
		{"traceidratio", "0", false, false, false},
		{"parentbased_traceidratio", "0", false, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.sampler+tc.arg, func(t *testing.T) {
			tel := newTel(t, Config{Getenv: env("OTEL_TRACES_SAMPLER", tc.sampler, "OTEL_TRACES_SAMPLER_ARG", tc.arg),
				SpanExporter: tracetest.NewInMemoryExporter()})
			rec := func(parent trace.SpanContext) bool {
				_, s := tel.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "x")
				defer s.End()
				return s.IsRecording()
			}
			if got := [3]bool{rec(trace.SpanContext{}), rec(sampled), rec(unsampled)}; got != [3]bool{tc.root, tc.underSampled, tc.underUnsampled} {
				t.Fatalf("recording (root, sampled parent, unsampled parent) = %v", got)
			}
		})
	}
}

// GET /metrics shows the contract's names and labels exactly: no unit or
// _total doubling, no scope labels, no target_info.
func TestMetricNames(t *testing.T) {
	tel := newTel(t, Config{Getenv: env()})
	ctx := context.Background()
	m := tel.Metrics
	m.Recommend(ctx, "home", "mf@1", OutcomeOK, time.Millisecond)
	m.BackendCall(ctx, "mf@1", "embedded", 300*time.Microsecond)
	m.ArmError(ctx, "home", "mf@2", "deadline")
	m.Trial(ctx, "home", "mf@1", 1)
	m.Success(ctx, "home", "mf@1", 1)
	m.RewardSuccess(ctx, "home", "mf@1", 0.25)
	m.FeedbackEvents(ctx, "accepted", 2)
	m.Flush(ctx, time.Millisecond, context.DeadlineExceeded)
	if err := tel.Observe(Sources{Arms: func(context.Context) []ArmStat { return []ArmStat{{"home", "mf@1", 0.25, 0.5}} },
		PendingTrials: func() int64 { return 7 }, PredictionLog: func() (int64, int64) { return 2, 3 }}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		typ    string
		labels string
	}{
		RecommendRequests:  {"COUNTER", "arm,endpoint,outcome"},
		RecommendDuration:  {"HISTOGRAM", "endpoint"},
		BackendDuration:    {"HISTOGRAM", "arm,backend"},
		ArmErrors:          {"COUNTER", "arm,class,endpoint"},
		Trials:             {"COUNTER", "arm,endpoint"},
		Successes:          {"COUNTER", "arm,endpoint"},
		RewardSuccesses:    {"COUNTER", "arm,endpoint"},
		FeedbackEvents:     {"COUNTER", "result"},
		TrafficShare:       {"GAUGE", "arm,endpoint"},
		PBest:              {"GAUGE", "arm,endpoint"},
		StoreFlushDuration: {"HISTOGRAM", ""},
		StoreFlushErrors:   {"COUNTER", ""},
		PendingTrials:      {"GAUGE", ""},
	}
	if f := fams[PredLogDropped]; f == nil || f.GetType().String() != "COUNTER" || len(f.GetMetric()) != 2 {
		t.Errorf("%s: %v, want a counter with two series", PredLogDropped, f)
	} else {
		for _, m := range f.GetMetric() {
			l := m.GetLabel()
			if len(l) != 1 || l[0].GetName() != "reason" ||
				map[string]float64{"queue_full": 2, "write_failed": 3}[l[0].GetValue()] != m.GetCounter().GetValue() {
				t.Errorf("%s series %v = %v", PredLogDropped, l, m.GetCounter().GetValue())
			}
		}
	}
	for name, w := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType().String() != w.typ || len(f.GetMetric()) != 1 {
			t.Errorf("%s: %s with %d series, want one %s", name, f.GetType(), len(f.GetMetric()), w.typ)
			continue
		}
		var names []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName())
		}
		if got := strings.Join(names, ","); got != w.labels {
			t.Errorf("%s labels %q, want %q", name, got, w.labels)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "otel_") || name == "target_info" {
			t.Errorf("unexpected series %s", name)
		}
	}
	if fams["go_goroutine_count"] == nil || fams["go_memory_used_bytes"] == nil {
		t.Error("Go runtime metrics missing")
	}
	if b := fams[RecommendDuration].GetMetric()[0].GetHistogram().GetBucket(); len(b) != len(DurationBuckets)+1 || b[0].GetUpperBound() != 0.00005 {
		t.Errorf("duration buckets %v, want %v", b, DurationBuckets)
	}
}

// Recording through cached attribute sets allocates nothing.
func TestRecordingDoesNotAllocate(t *testing.T) {
	tel := newTel(t, Config{Getenv: env()})
	ctx := context.Background()
	m := tel.Metrics
	record := func() {
		m.Recommend(ctx, "home", "mf@1", OutcomeOK, time.Millisecond)
		m.BackendCall(ctx, "mf@1", "embedded", time.Millisecond)
		m.Trial(ctx, "home", "mf@1", 1)
		_, s := tel.Child(ctx, "featurize")
		s.End()
	}
	record()
	if n := testing.AllocsPerRun(100, record); n != 0 {
		t.Fatalf("%v allocations per recommend's recording, want 0", n)
	}
}

func TestLogHandler(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tel := newTel(t, Config{Getenv: env(), SpanExporter: spans, SyncExport: true})
	traced, span := tel.Start(context.Background(), "req")
	defer span.End()
	sc := span.SpanContext()
	cases := []struct {
		name       string
		ctx        context.Context
		log        func(*slog.Logger, context.Context)
		want       map[string]any
		wantNoKeys []string
	}{
		{"with a span", traced, func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "hi", "k", 1) },
			map[string]any{"msg": "hi", "k": 1.0, "trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()}, nil},
		{"without a span", context.Background(), func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "hi") },
			map[string]any{"msg": "hi"}, []string{"trace_id", "span_id"}},
		{"attrs kept", traced, func(l *slog.Logger, ctx context.Context) { l.With("svc", "x").InfoContext(ctx, "hi") },
			map[string]any{"svc": "x", "trace_id": sc.TraceID().String()}, nil},
		{"below the level", traced, func(l *slog.Logger, ctx context.Context) { l.DebugContext(ctx, "hidden") }, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
			tc.log(l, tc.ctx)
			if tc.want == nil {
				if buf.Len() != 0 {
					t.Fatalf("logged %s", buf.String())
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, buf.String())
				}
			}
			for _, k := range tc.wantNoKeys {
				if _, ok := got[k]; ok {
					t.Errorf("%s present in %s", k, buf.String())
				}
			}
		})
	}
}

// The gin middleware continues an incoming traceparent over a real HTTP
// connection, names the span by route and marks server errors.
func TestGinMiddleware(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	spans := tracetest.NewInMemoryExporter()
	tel := newTel(t, Config{Getenv: env(), SpanExporter: spans, SyncExport: true})
	e := gin.New()
	e.Use(tel.GinMiddleware())
	e.GET("/v1/things/:id", func(c *gin.Context) {
		_, child := tel.Child(c.Request.Context(), "work")
		child.End()
		st, _ := map[string]int{"ok": 200, "bad": 500}[c.Param("id")]
		c.Status(st)
	})
	e.GET("/metrics", func(c *gin.Context) { c.Status(200) })
	srv := httptest.NewServer(e)
	defer srv.Close()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		path, traceparent string
		wantSpans         int
		wantStatus        codes.Code
	}{
		{"/v1/things/ok", parent, 2, codes.Unset},
		{"/v1/things/bad", parent, 2, codes.Error},
		{"/v1/things/ok", "", 2, codes.Unset},
		{"/metrics", parent, 0, codes.Unset},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+tc.traceparent, func(t *testing.T) {
			spans.Reset()
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			if tc.traceparent != "" {
				req.Header.Set("traceparent", tc.traceparent)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := spans.GetSpans()
			if len(got) != tc.wantSpans {
				t.Fatalf("%d spans, want %d", len(got), tc.wantSpans)
			}
			if tc.wantSpans == 0 {
				return
			}
			var server tracetest.SpanStub
			for _, s := range got {
				if s.SpanKind == trace.SpanKindServer {
					server = s
				}
			}
			if server.Name != "GET /v1/things/:id" || server.Status.Code != tc.wantStatus {
				t.Fatalf("server span %q status %v", server.Name, server.Status)
			}
			if tc.traceparent != "" && (server.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
				server.Parent.SpanID().String() != "00f067aa0ba902b7") {
				t.Fatalf("server span %v under %v does not continue the traceparent", server.SpanContext.TraceID(), server.Parent.SpanID())
			}
			if !slices.Contains(server.Attributes, attribute.String("http.route", "/v1/things/:id")) {
				t.Fatalf("attributes %v lack the route", server.Attributes)
			}
		})
	}
}

// BenchmarkRecording is the metrics a recommend records (request, duration,
// model call, trial) with tracing off.
func BenchmarkRecording(b *testing.B) {
	tel, err := New(context.Background(), Config{Getenv: env()})
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	ctx := context.Background()
	m := tel.Metrics
	b.ReportAllocs()
	for b.Loop() {
		m.Recommend(ctx, "home", "mf@1", OutcomeOK, time.Millisecond)
		m.BackendCall(ctx, "mf@1", "embedded", time.Millisecond)
		m.Trial(ctx, "home", "mf@1", 1)
	}
}
