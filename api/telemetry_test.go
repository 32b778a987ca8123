package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/predtoken"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/telemetry"
)

// observedServer is the demo's two embedded arms behind endpoint home,
// served with the given telemetry (nil: none) and logger.
func observedServer(tb testing.TB, tel *telemetry.Telemetry, log *slog.Logger) *Server {
	tb.Helper()
	return authServer(tb, tel, log, nil)
}

// authServer is observedServer with the API keys of a (nil: none).
func authServer(tb testing.TB, tel *telemetry.Telemetry, log *slog.Logger, a *Auth) *Server {
	tb.Helper()
	db, err := store.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	ctx := context.Background()
	reg, err := registry.New(ctx, db, backend.NewDrivers(embedded.Driver{}), nil, registry.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		body := `{"backend": {"type": "embedded", "path": "` + filepath.Join("..", "examples", "demo", "models", "mf", v) + `"}}`
		if _, _, err := reg.PutVersion(ctx, "mf", v, []byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	if _, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"]}`)); err != nil {
		tb.Fatal(err)
	}
	table := &counters.Table{}
	signer, _ := predtoken.NewSigner(bytes.Repeat([]byte{7}, 32))
	rt := router.New(reg, table, signer, log, router.Options{Observers: []router.Observer{router.NewTelemetryObserver(tel)}, Tracer: tel})
	fb := feedback.NewService(signer, db, table, func(string, string) (float64, bool) { return 0, true }, log, feedback.Options{Telemetry: tel})
	return New(Config{MaxBodyBytes: 64 << 10, MaxConcurrent: 8, Telemetry: tel, Auth: a}, reg, rt, fb, table, log)
}

func newTel(tb testing.TB, spans *tracetest.InMemoryExporter) *telemetry.Telemetry {
	tb.Helper()
	cfg := telemetry.Config{Getenv: func(string) string { return "" }}
	if spans != nil {
		cfg.SpanExporter = spans
		cfg.Getenv = func(k string) string {
			if k == "OTEL_TRACES_SAMPLER" {
				return "always_on"
			}
			return ""
		}
	}
	tel, err := telemetry.New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// At debug level each request gets one log line with its method, path,
// status, duration and, for a recommend, endpoint and arm, stamped with the
// request's trace; at info there is none.
func TestRequestLogLine(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	cases := []struct {
		level   slog.Level
		tracing bool
		lines   int
	}{
		{slog.LevelInfo, false, 0},
		{slog.LevelInfo, true, 0},
		{slog.LevelDebug, false, 1},
		{slog.LevelDebug, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.level.String()+map[bool]string{true: " traced", false: ""}[tc.tracing], func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.level})))
			var spans *tracetest.InMemoryExporter
			if tc.tracing {
				spans = tracetest.NewInMemoryExporter()
			}
			h := observedServer(t, newTel(t, spans), log).Handler()
			buf.Reset()
			req := httptest.NewRequest("POST", "/v1/endpoints/home/recommend", strings.NewReader(`{"user_id": "u1", "k": 2}`))
			req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var resp router.Response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); rec.Code != 200 || err != nil {
				t.Fatalf("recommend: %d %s", rec.Code, rec.Body)
			}
			lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != tc.lines {
				t.Fatalf("%d log lines, want %d:\n%s", len(lines), tc.lines, buf.String())
			}
			if tc.lines == 0 {
				return
			}
			var got map[string]any
			if err := json.Unmarshal(lines[0], &got); err != nil {
				t.Fatal(err)
			}
			if got["method"] != "POST" || got["path"] != "/v1/endpoints/home/recommend" || got["status"] != 200.0 ||
				got["endpoint"] != "home" || got["arm"] != resp.Arm || got["duration_ms"] == nil {
				t.Fatalf("log line %s", lines[0])
			}
			if _, ok := got["trace_id"]; ok != tc.tracing || (tc.tracing && got["trace_id"] != traceID) {
				t.Fatalf("log line %s: trace_id with tracing %v", lines[0], tc.tracing)
			}
		})
	}
}

// GET /metrics is served with telemetry, outside the in-flight limit, and
// not without it.
func TestMetricsRoute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tel    bool
		status int
	}{{"with telemetry", true, 200}, {"without", false, 404}} {
		t.Run(tc.name, func(t *testing.T) {
			var tel *telemetry.Telemetry
			if tc.tel {
				tel = newTel(t, nil)
			}
			h := observedServer(t, tel, nil).Handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != tc.status {
				t.Fatalf("GET /metrics: %d, want %d", rec.Code, tc.status)
			}
			if tc.tel && !strings.Contains(rec.Body.String(), "# TYPE go_goroutine_count gauge") {
				t.Fatalf("GET /metrics: %s", rec.Body)
			}
		})
	}
}

// BenchmarkHTTPRecommend is a recommend through the whole HTTP handler (gin,
// middleware, JSON both ways, an embedded model over the demo's 1,000
// items): without telemetry, with telemetry and tracing off (the default),
// and with every request traced into an in-memory exporter.
func BenchmarkHTTPRecommend(b *testing.B) {
	body := []byte(`{"user_id": "u42", "k": 10}`)
	for _, tc := range []struct {
		name       string
		tel, trace bool
	}{
		{"uninstrumented", false, false},
		{"tracing_off", true, false},
		{"tracing_100pct", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var tel *telemetry.Telemetry
			var spans *tracetest.InMemoryExporter
			if tc.trace {
				spans = tracetest.NewInMemoryExporter()
			}
			if tc.tel {
				tel = newTel(b, spans)
			}
			h := observedServer(b, tel, slog.New(slog.NewJSONHandler(io.Discard, nil))).Handler()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/v1/endpoints/home/recommend", bytes.NewReader(body))
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
				if spans != nil && i%1024 == 0 {
					spans.Reset()
				}
			}
		})
	}
}

// Over gRPC too: one line per call at debug, with the trace of the caller's
// traceparent metadata when tracing; none at info.
func TestGRPCRequestLogLine(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		level   slog.Level
		tracing bool
		lines   int
	}{{slog.LevelInfo, true, 0}, {slog.LevelDebug, false, 1}, {slog.LevelDebug, true, 1}} {
		t.Run(fmt.Sprint(tc.level, tc.tracing), func(t *testing.T) {
			var buf syncBuffer
			log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.level})))
			var spans *tracetest.InMemoryExporter
			if tc.tracing {
				spans = tracetest.NewInMemoryExporter()
			}
			s := observedServer(t, newTel(t, spans), log)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gs := grpc.NewServer(s.GRPCServerOptions()...)
			s.RegisterGRPC(gs)
			go func() { _ = gs.Serve(lis) }()
			defer gs.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			resp, err := pb.NewGatewayClient(conn).Recommend(ctx, &pb.RecommendRequest{Endpoint: "home", UserId: "u1", K: 2})
			if err != nil {
				t.Fatal(err)
			}
			lines := buf.lines()
			if len(lines) != tc.lines {
				t.Fatalf("%d log lines, want %d: %q", len(lines), tc.lines, lines)
			}
			if tc.lines == 0 {
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatal(err)
			}
			if got["method"] != "/modelgate.v1.Gateway/Recommend" || got["code"] != "OK" || got["endpoint"] != "home" || got["arm"] != resp.GetArm() {
				t.Fatalf("log line %s", lines[0])
			}
			if _, ok := got["trace_id"]; ok != tc.tracing || (tc.tracing && got["trace_id"] != traceID) {
				t.Fatalf("log line %s: trace_id with tracing %v", lines[0], tc.tracing)
			}
		})
	}
}

// syncBuffer is a log sink written by the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
