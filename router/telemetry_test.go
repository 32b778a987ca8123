package router

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/modelgate/modelgate/telemetry"
)

// noEnv is an environment without any OTEL_* variable.
func noEnv(string) string { return "" }

func alwaysOn(k string) string {
	if k == "OTEL_TRACES_SAMPLER" {
		return "always_on"
	}
	return ""
}

// newTelemetry returns telemetry without exporters, or with every span
// going to an in-memory exporter when spans is not nil.
func newTelemetry(tb testing.TB, spans *tracetest.InMemoryExporter) *telemetry.Telemetry {
	tb.Helper()
	cfg := telemetry.Config{Getenv: noEnv}
	if spans != nil {
		cfg = telemetry.Config{Getenv: alwaysOn, SpanExporter: spans, SyncExport: true}
	}
	tel, err := telemetry.New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// scrape returns the value of every sample of a metric family by its
// labels, as GET /metrics shows them; histograms give their count.
func scrape(t *testing.T, tel *telemetry.Telemetry, name string) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	if f := fams[name]; f != nil {
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// The recommend metrics count every outcome under the arm the policy
// chose, so that a failing arm shows as its own fallbacks and errors.
func TestRecommendMetrics(t *testing.T) {
	cases := []struct {
		name     string
		endpoint string
		modes    map[string]string
		// check gets the requests, arm error and trial samples by labels.
		check func(t *testing.T, f *fixture, req, armErr, trials map[string]float64)
	}{
		{"every call served by its arm", `{"arms": ["m@1", "m@2"]}`, nil,
			func(t *testing.T, f *fixture, req, armErr, trials map[string]float64) {
				for _, arm := range []string{"m@1", "m@2"} {
					if got, want := req["arm="+arm+",endpoint=e,outcome=ok,"], float64(f.scorers[arm].calls.Load()); got != want {
						t.Errorf("requests of %s = %v, want %v", arm, got, want)
					}
					if got, want := trials["arm="+arm+",endpoint=e,"], float64(f.trials(arm, "all")); got != want {
						t.Errorf("trials of %s = %v, want %v", arm, got, want)
					}
				}
				if len(armErr) != 0 {
					t.Errorf("arm errors %v, want none", armErr)
				}
			}},
		{"chosen arm fails, fallback serves", `{"arms": ["m@1", "m@2"], "fallback": "m@2"}`, map[string]string{"m@1": "fail"},
			func(t *testing.T, f *fixture, req, armErr, trials map[string]float64) {
				failed := float64(f.scorers["m@1"].calls.Load())
				if req["arm=m@1,endpoint=e,outcome=fallback,"] != failed || armErr["arm=m@1,class=unavailable,endpoint=e,"] != failed || failed == 0 {
					t.Errorf("m@1 called %v times; requests %v, arm errors %v", failed, req, armErr)
				}
				if req["arm=m@2,endpoint=e,outcome=ok,"]+failed != 20 || trials["arm=m@2,endpoint=e,"] != 20 {
					t.Errorf("requests %v, trials %v: want 20 served by m@2", req, trials)
				}
			}},
		{"everything fails", `{"arms": ["m@1", "m@2"]}`, map[string]string{"m@1": "fail", "m@2": "fail"},
			func(t *testing.T, f *fixture, req, armErr, trials map[string]float64) {
				if n := req["arm=m@1,endpoint=e,outcome=error,"] + req["arm=m@2,endpoint=e,outcome=error,"]; n != 20 {
					t.Errorf("requests %v, want 20 errors", req)
				}
				calls := float64(f.scorers["m@1"].calls.Load() + f.scorers["m@2"].calls.Load())
				if armErr["arm=m@1,class=unavailable,endpoint=e,"]+armErr["arm=m@2,class=unavailable,endpoint=e,"] != calls || len(trials) != 0 {
					t.Errorf("arm errors %v for %v calls, trials %v", armErr, calls, trials)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tel := newTelemetry(t, nil)
			f := newFixtureOpt(t, tc.endpoint, Options{Observers: []Observer{NewTelemetryObserver(tel)}, Tracer: tel})
			for arm, m := range tc.modes {
				f.scorers[arm].mode.Store(m)
			}
			for range 20 {
				_, _ = f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
			}
			// An unknown endpoint is not a label value.
			_, _ = f.r.Recommend(context.Background(), &Request{Endpoint: "nope", UserID: "u"})
			req := scrape(t, tel, telemetry.RecommendRequests)
			tc.check(t, f, req, scrape(t, tel, telemetry.ArmErrors), scrape(t, tel, telemetry.Trials))
			if d := scrape(t, tel, telemetry.RecommendDuration); d["endpoint=e,"] != 20 || len(d) != 1 {
				t.Errorf("duration counts %v, want 20 for endpoint e only", d)
			}
			var backendCalls float64
			for _, s := range f.scorers {
				backendCalls += float64(s.calls.Load())
			}
			var observed float64
			for _, n := range scrape(t, tel, telemetry.BackendDuration) {
				observed += n
			}
			if observed != backendCalls {
				t.Errorf("backend duration observations %v, want one per call (%v)", observed, backendCalls)
			}
		})
	}
}

// Under a recording server span, a recommend has choose, featurize and
// backend spans, with the choice's attributes; a failed call is marked
// with its class.
func TestRecommendSpans(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tel := newTelemetry(t, spans)
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"segment_by": ["surface"]}}`, Options{Observers: []Observer{NewTelemetryObserver(tel)}, Tracer: tel})
	f.scorers["m@1"].mode.Store("fail")
	for range 10 {
		ctx, root := tel.Start(context.Background(), "server")
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": "music"}})
		root.End()
		if err != nil {
			t.Fatal(err)
		}
		got := spans.GetSpans()
		spans.Reset()
		byName := map[string][]tracetest.SpanStub{}
		for _, s := range got {
			byName[s.Name] = append(byName[s.Name], s)
			if s.Name != "server" && s.Parent.SpanID() != root.SpanContext().SpanID() {
				t.Errorf("span %s is not a child of the server span", s.Name)
			}
		}
		attrs := func(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
			m := map[attribute.Key]attribute.Value{}
			for _, kv := range s.Attributes {
				m[kv.Key] = kv.Value
			}
			return m
		}
		if len(byName["choose"]) != 1 {
			t.Fatalf("spans %v: want one choose", byName)
		}
		ch := attrs(byName["choose"][0])
		if ch[telemetry.AttrEndpoint].AsString() != "e" || ch[telemetry.AttrSegment].AsString() != "surface=music" ||
			ch[telemetry.AttrPropensity].AsFloat64() <= 0 || ch[telemetry.AttrArm].AsString() == "" {
			t.Fatalf("choose attributes %v", ch)
		}
		srv := attrs(byName["server"][0])
		if srv[telemetry.AttrArm].AsString() != resp.Arm || srv[telemetry.AttrFallback].AsBool() != resp.Fallback {
			t.Fatalf("server span attributes %v for %+v", srv, resp)
		}
		wantCalls := 1
		if resp.Fallback {
			wantCalls = 2
			if ch[telemetry.AttrArm].AsString() != "m@1" || srv[telemetry.AttrChosenArm].AsString() != "m@1" {
				t.Fatalf("fallback: choose %v, server %v", ch, srv)
			}
		}
		if len(byName["featurize"]) != wantCalls || len(byName["backend.predict"]) != wantCalls {
			t.Fatalf("spans %v: want %d featurize and backend.predict", byName, wantCalls)
		}
		for _, s := range byName["backend.predict"] {
			a := attrs(s)
			failed := a[telemetry.AttrArm].AsString() == "m@1"
			if failed != (a[telemetry.AttrErrorClass].AsString() == "unavailable") || failed != (len(s.Events) == 1) {
				t.Fatalf("backend span of %s: attributes %v, events %v", a[telemetry.AttrArm].AsString(), a, s.Events)
			}
		}
	}
}

// A batch call's span is the call's: each entry is an event on it, and an
// entry's error does not fail it.
func TestBatchSpan(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tel := newTelemetry(t, spans)
	f := newFixtureOpt(t, `{"arms": ["m@1"]}`, Options{Observers: []Observer{NewTelemetryObserver(tel)}, Tracer: tel})
	ctx, root := tel.Start(context.Background(), "server")
	reqs := batchOf(3, func(i int, r *Request) {
		if i == 1 {
			r.K = 5000 // refused: no outcome, no event
		}
	})
	reqs[2].Candidates, reqs[2].Exclude = []string{"zz"}, nil // served, one item
	_, errs, err := f.r.RecommendBatch(ctx, "e", reqs)
	root.End()
	if err != nil || errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("batch: %v, %v", errs, err)
	}
	for _, s := range spans.GetSpans() {
		if s.Name != "server" {
			continue
		}
		if s.Status.Code == codes.Error {
			t.Errorf("the batch span failed: %+v", s.Status)
		}
		n := 0
		for _, ev := range s.Events {
			if ev.Name == "batch.entry" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d entry events, want 2 (the served entries)", n)
		}
		return
	}
	t.Fatal("no server span")
}

// BenchmarkRecommendTelemetry is the cost of telemetry on the recommend
// path: without it, with metrics and tracing off (the default), and with
// every request traced (a server span and its children, into an in-memory
// exporter).
func BenchmarkRecommendTelemetry(b *testing.B) {
	for _, tc := range []struct {
		name  string
		tel   bool
		trace bool
	}{
		{"uninstrumented", false, false},
		{"tracing_off", true, false},
		{"tracing_100pct", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var opt Options
			var spans *tracetest.InMemoryExporter
			if tc.trace {
				spans = tracetest.NewInMemoryExporter()
			}
			var tel *telemetry.Telemetry
			if tc.tel {
				tel = newTelemetry(b, spans)
				opt.Observers, opt.Tracer = []Observer{NewTelemetryObserver(tel)}, tel
			}
			f := newFixtureOpt(b, `{"arms": ["m@1", "m@2", "m@3"]}`, opt)
			req := &Request{Endpoint: "e", UserID: "u", K: 10}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx, root := tel.Start(context.Background(), "server")
				if _, err := f.r.Recommend(ctx, req); err != nil {
					b.Fatal(err)
				}
				root.End()
				if spans != nil && i%1024 == 0 {
					spans.Reset()
				}
			}
		})
	}
}
