package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/internal/testenv"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/telemetry"
)

// otlpReceiver is an OTLP/gRPC collector on a loopback port: it keeps every
// span and the names of the metrics it receives.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string

	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
	metrics  map[string]bool
}

type otlpMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *otlpReceiver
}

func (m otlpMetrics) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, x := range sm.GetMetrics() {
				m.r.metrics[x.GetName()] = true
			}
		}
	}
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: lis.Addr().String(), services: map[string]bool{}, metrics: map[string]bool{}}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, r)
	colmetricspb.RegisterMetricsServiceServer(gs, otlpMetrics{r: r})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				r.services[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// trace returns the spans received of one trace, by name.
func (r *otlpReceiver) trace(traceID string) map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			out[s.GetName()] = s
		}
	}
	return out
}

func spanAttrs(s *tracepb.Span) map[string]*commonpb.AnyValue {
	out := map[string]*commonpb.AnyValue{}
	for _, kv := range s.GetAttributes() {
		out[kv.GetKey()] = kv.GetValue()
	}
	return out
}

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// startAppTel is startApp with the given telemetry, and a gRPC listener.
func startAppTel(t *testing.T, tel *telemetry.Telemetry) (*testApp, string) {
	t.Helper()
	log := slog.New(telemetry.NewLogHandler(slog.NewTextHandler(io.Discard, nil)))
	a := startGateway(t, demoConfig(t, ""), Options{Logger: log, Telemetry: tel}, openedStore{})
	return a, a.grpcAddr
}

// One recommend that carries a traceparent leaves, in the collector, the
// spans of that trace: the server span under the caller's, choose with the
// choice's attributes, featurize and the backend call; and TF Serving gets
// the same trace in the Predict call's metadata. The collector gets the
// metrics too, under the contract's names.
func TestTraceReachesCollectorAndTFServing(t *testing.T) {
	rcv := startReceiver(t)
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: envOf(
		"OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+rcv.addr, "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Tracing() {
		t.Fatal("tracing is off with an endpoint set")
	}
	a, grpcAddr := startAppTel(t, tel)
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 500), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/tf", `{"arms": ["ranker@1"]}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)

	const parentSpan = "00f067aa0ba902b7"
	cases := []struct {
		name, traceID, endpoint string
		grpc                    bool
		server, backendSpan     string
		tfserving               bool
	}{
		{"HTTP to TF Serving", "4bf92f3577b34da6a3ce929d0e0e4701", "tf", false,
			"POST /v1/endpoints/:endpoint/recommend", "tfserving.predict", true},
		{"gRPC to TF Serving", "4bf92f3577b34da6a3ce929d0e0e4702", "tf", true,
			"modelgate.v1.Gateway/Recommend", "tfserving.predict", true},
		{"HTTP to an embedded model", "4bf92f3577b34da6a3ce929d0e0e4703", "home", false,
			"POST /v1/endpoints/:endpoint/recommend", "embedded.predict", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			traceparent := "00-" + tc.traceID + "-" + parentSpan + "-01"
			var arm string
			if tc.grpc {
				ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)
				resp, err := gw.Recommend(ctx, &pb.RecommendRequest{Endpoint: tc.endpoint, UserId: "u42", Candidates: cands, K: 3})
				if err != nil {
					t.Fatal(err)
				}
				arm = resp.GetArm()
			} else {
				body, _ := json.Marshal(map[string]any{"user_id": "u42", "candidates": cands, "k": 3})
				req, _ := http.NewRequest("POST", a.url+"/v1/endpoints/"+tc.endpoint+"/recommend", bytes.NewReader(body))
				req.Header.Set("traceparent", traceparent)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var rec recResp
				_ = json.NewDecoder(resp.Body).Decode(&rec)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("recommend: %d", resp.StatusCode)
				}
				arm = rec.Arm
			}
			if err := tel.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := rcv.trace(tc.traceID)
			names := make([]string, 0, len(spans))
			for n := range spans {
				names = append(names, n)
			}
			sort.Strings(names)
			server := spans[tc.server]
			if server == nil || hex.EncodeToString(server.GetParentSpanId()) != parentSpan || server.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
				t.Fatalf("spans %v: want server span %q under the caller's span %s", names, tc.server, parentSpan)
			}
			for _, n := range []string{"choose", "featurize", tc.backendSpan} {
				if s := spans[n]; s == nil || hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(server.GetSpanId()) {
					t.Fatalf("spans %v: want %q under the server span", names, n)
				}
			}
			ch := spanAttrs(spans["choose"])
			if ch["modelgate.endpoint"].GetStringValue() != tc.endpoint || ch["modelgate.segment"].GetStringValue() != "all" ||
				ch["modelgate.arm"].GetStringValue() != arm || ch["modelgate.propensity"].GetDoubleValue() <= 0 {
				t.Fatalf("choose attributes %v, want endpoint %s, segment all, arm %s and a propensity", ch, tc.endpoint, arm)
			}
			if !tc.tfserving {
				return
			}
			client := spans["tensorflow.serving.PredictionService/Predict"]
			if client == nil || client.GetKind() != tracepb.Span_SPAN_KIND_CLIENT ||
				hex.EncodeToString(client.GetParentSpanId()) != hex.EncodeToString(spans[tc.backendSpan].GetSpanId()) {
				t.Fatalf("spans %v: want the Predict client span under %s", names, tc.backendSpan)
			}
			mds := tf.PredictMetadata()
			if len(mds) == 0 {
				t.Fatal("TF Serving received no Predict")
			}
			tp := mds[len(mds)-1].Get("traceparent")
			if len(tp) != 1 || !strings.Contains(tp[0], tc.traceID) || !strings.Contains(tp[0], hex.EncodeToString(client.GetSpanId())) {
				t.Fatalf("TF Serving got traceparent %v, want trace %s from span %x", tp, tc.traceID, client.GetSpanId())
			}
		})
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if !rcv.services["modelgate"] {
		t.Fatalf("service names %v, want modelgate", rcv.services)
	}
	// The same endpoint gets the metrics, under the contract's names.
	if !rcv.metrics[telemetry.RecommendRequests] || !rcv.metrics[telemetry.BackendDuration] {
		t.Fatalf("metrics received over OTLP: %v", rcv.metrics)
	}
}

// With no OTEL_* variable set, the app's telemetry runs no exporter but the
// Prometheus handler and installs no tracing hook: nothing connects
// anywhere.
func TestNoOTELEnvironmentNoExporter(t *testing.T) {
	tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: envOf()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := startAppTel(t, tel)
	if a.tel.Tracing() || strings.Join(a.tel.Exporters(), ",") != "prometheus" ||
		len(a.tel.GRPCDialOptions()) != 0 || len(a.pool.DialOptions) != 0 {
		t.Fatalf("tracing %v, exporters %v, TF Serving dial options %d", a.tel.Tracing(), a.tel.Exporters(), len(a.pool.DialOptions))
	}
	if st := call(t, "GET", a.url+"/metrics", nil, nil); st != 200 {
		t.Fatalf("GET /metrics: %d", st)
	}
}

// scrapeMetrics fetches GET /metrics and parses it as Prometheus does.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sample is one series: its labels as "k=v,…" in label order, and its
// value (a histogram's count).
func samples(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		var kv []string
		for _, l := range m.GetLabel() {
			kv = append(kv, l.GetName()+"="+l.GetValue())
		}
		key := strings.Join(kv, ",")
		switch {
		case m.GetCounter() != nil:
			out[key] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			out[key] = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			out[key] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

// trafficApp serves known traffic: recommends on home, feedback with each
// result, and a TF Serving arm that fails. It returns the app and what was
// sent: how many home recommends each arm served and how many of those
// got a click.
func trafficApp(t *testing.T) (a *testApp, served, clicked map[string]int) {
	t.Helper()
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: envOf()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ = startAppTel(t, tel)
	served, clicked = map[string]int{}, map[string]int{}
	var preds []recResp
	recommend := func(n int) {
		for i := range n {
			var rec recResp
			if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u" + string(rune('a'+i)), "k": 3}, &rec); st != 200 {
				t.Fatalf("recommend: %d", st)
			}
			served[rec.Arm]++
			preds = append(preds, rec)
		}
	}
	recommend(8)
	var fb fbResp
	events := []map[string]string{{"prediction_id": "bogus", "type": "click"}, {"prediction_id": preds[0].PredictionID, "type": "view"}}
	for _, p := range preds[:3] {
		events = append(events, map[string]string{"prediction_id": p.PredictionID, "type": "click", "item_id": p.Items[0].ID})
		clicked[p.Arm]++
	}
	if st := call(t, "POST", a.url+"/v1/feedback", map[string]any{"events": events}, &fb); st != 200 || fb.Accepted != 3 || len(fb.Rejected) != 2 {
		t.Fatalf("feedback: %d %+v", st, fb)
	}
	again := []map[string]string{events[2]}
	if st := call(t, "POST", a.url+"/v1/feedback", map[string]any{"events": again}, &fb); st != 200 || fb.Duplicates != 1 {
		t.Fatalf("feedback again: %d %+v", st, fb)
	}
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 500), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/tf", `{"arms": ["ranker@1"]}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	// Trials served after the last feedback call (which writes the pending
	// ones with it) are written by the background flush.
	recommend(2)
	tf.SetFault(tfservingtest.Fault{Fail: codes.Unavailable})
	if st := call(t, "POST", a.url+"/v1/endpoints/tf/recommend", map[string]any{"user_id": "u1", "candidates": cands}, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("recommend on a failing arm: %d, want 503", st)
	}
	return a, served, clicked
}

// After known traffic, every series of the contract is on GET /metrics with
// its labels, and the counters equal what was sent.
func TestMetricsAfterTraffic(t *testing.T) {
	a, served, clicked := trafficApp(t)
	a.gauges.refresh() // as the gauges' loop does within gaugeInterval: tf was created after the start
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fams = scrapeMetrics(t, a.url)
		if fams[telemetry.StoreFlushDuration] != nil || time.Now().After(deadline) {
			break // the background flush of the trials has run
		}
	}
	want := map[string]map[string]float64{
		telemetry.RecommendRequests: {"arm=ranker@1,endpoint=tf,outcome=error": 1},
		telemetry.RecommendDuration: {"endpoint=home": 10, "endpoint=tf": 1},
		telemetry.BackendDuration:   {"arm=ranker@1,backend=tfserving": 1},
		telemetry.ArmErrors:         {"arm=ranker@1,class=unavailable,endpoint=tf": 1},
		telemetry.Trials:            {},
		telemetry.Successes:         {},
		telemetry.FeedbackEvents:    {"result=accepted": 3, "result=duplicate": 1, "result=invalid_prediction_id": 1, "result=unknown_type": 1},
	}
	for arm, n := range served {
		want[telemetry.RecommendRequests]["arm="+arm+",endpoint=home,outcome=ok"] = float64(n)
		want[telemetry.BackendDuration]["arm="+arm+",backend=embedded"] = float64(n)
		want[telemetry.Trials]["arm="+arm+",endpoint=home"] = float64(n)
	}
	for arm, n := range clicked {
		want[telemetry.Successes]["arm="+arm+",endpoint=home"] = float64(n)
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			f := fams[name]
			if f == nil {
				t.Fatalf("%s missing", name)
			}
			got := samples(f)
			if len(got) != len(w) {
				t.Errorf("series %v, want %v", got, w)
			}
			for k, v := range w {
				if got[k] != v {
					t.Errorf("%s{%s} = %v, want %v", name, k, got[k], v)
				}
			}
		})
	}
	t.Run("gauges", func(t *testing.T) {
		for _, name := range []string{telemetry.TrafficShare, telemetry.PBest} {
			got := samples(fams[name])
			sum := 0.0
			for _, arm := range []string{"mf@1", "mf@2"} {
				v, ok := got["arm="+arm+",endpoint=home"]
				if !ok || v < 0 || v > 1 {
					t.Errorf("%s of %s = %v (present %v), want a probability", name, arm, v, ok)
				}
				sum += v
			}
			if sum < 0.95 || sum > 1.05 {
				t.Errorf("%s over home's arms sums to %v, want 1", name, sum)
			}
			if _, ok := got["arm=ranker@1,endpoint=tf"]; !ok {
				t.Errorf("%s lacks tf's arm: %v", name, got)
			}
		}
		if fams[telemetry.PendingTrials] == nil || fams[telemetry.StoreFlushDuration] == nil {
			t.Errorf("store backlog or flush series missing")
		}
		if fams["go_goroutine_count"] == nil {
			t.Errorf("Go runtime metrics missing")
		}
	})
}

// The operators' kit: the dashboard and the alert rules parse, and every
// series they name is on GET /metrics; when promtool is installed, it
// accepts the rules and the Prometheus config, and the rules' unit tests
// (a failing arm, a rising fallback rate) pass.
func TestObservabilityKit(t *testing.T) {
	dir := filepath.Join("..", "examples", "observability")
	a, _, _ := trafficApp(t)
	// A flush has to have happened for the flush series to exist.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if scrapeMetrics(t, a.url)[telemetry.StoreFlushDuration] != nil {
			break
		}
	}
	fams := scrapeMetrics(t, a.url)
	series := regexp.MustCompile(`\b(modelgate_[a-z_]+|go_[a-z_]+)\b`)
	exists := func(name string) bool {
		if fams[name] != nil {
			return true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && fams[base] != nil && fams[base].GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	cases := []struct {
		file  string
		exprs func(t *testing.T, raw []byte) []string
	}{
		{"grafana-dashboard.json", func(t *testing.T, raw []byte) []string {
			var d struct {
				Title  string `json:"title"`
				Panels []struct {
					Title   string `json:"title"`
					Targets []struct {
						Expr string `json:"expr"`
					} `json:"targets"`
				} `json:"panels"`
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range d.Panels {
				for _, tg := range p.Targets {
					out = append(out, tg.Expr)
				}
			}
			if d.Title == "" || len(d.Panels) < 5 {
				t.Fatalf("dashboard %q has %d panels", d.Title, len(d.Panels))
			}
			return out
		}},
		{"alerts.yml", func(t *testing.T, raw []byte) []string {
			var r struct {
				Groups []struct {
					Name  string `yaml:"name"`
					Rules []struct {
						Alert string `yaml:"alert"`
						Expr  string `yaml:"expr"`
					} `yaml:"rules"`
				} `yaml:"groups"`
			}
			if err := yaml.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			var out []string
			alerts := map[string]bool{}
			for _, g := range r.Groups {
				for _, rule := range g.Rules {
					out = append(out, rule.Expr)
					alerts[rule.Alert] = true
				}
			}
			if !alerts["ModelgateArmFailing"] || !alerts["ModelgateFallbackRateRising"] {
				t.Fatalf("alerts %v lack the failing-arm or fallback-rate rule", alerts)
			}
			return out
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			exprs := tc.exprs(t, raw)
			if len(exprs) == 0 {
				t.Fatal("no expressions")
			}
			for _, e := range exprs {
				names := series.FindAllString(e, -1)
				if len(names) == 0 {
					t.Errorf("expression %q names no series", e)
				}
				for _, n := range names {
					if !exists(n) {
						t.Errorf("expression %q names %s, which GET /metrics does not have", e, n)
					}
				}
			}
		})
	}
	t.Run("collector config", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(dir, "otel-collector.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Receivers map[string]any `yaml:"receivers"`
			Service   struct {
				Pipelines map[string]any `yaml:"pipelines"`
			} `yaml:"service"`
		}
		if err := yaml.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		if c.Receivers["otlp"] == nil || c.Service.Pipelines["traces"] == nil || c.Service.Pipelines["metrics"] == nil {
			t.Fatalf("collector config lacks the otlp receiver or the traces/metrics pipelines: %+v", c)
		}
	})
	t.Run("promtool check rules", func(t *testing.T) {
		promtool := testenv.LookPath(t, "Debian: promtool is in the prometheus package; .ci/run extracts it", "promtool")
		for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}, {"check", "config", "prometheus.yml"}} {
			cmd := exec.Command(promtool, args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %v: %v\n%s", args, err, out)
			}
		}
	})
}
