package oip_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/backend/oip/oiptest"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/proto/inference"
)

// fullSpec builds one input of every dtype.
const fullSpec = `{"inputs": {
  "user":   {"from": "user_id", "transform": "hash_bucket", "buckets": 1000, "dtype": "int64"},
  "age":    {"from": "features.age", "transform": "zscore", "mean": 30, "std": 10, "default": 30, "dtype": "float32"},
  "income": {"from": "features.income", "dtype": "float64", "default": 0},
  "age_b":  {"from": "features.age", "transform": "bucketize", "boundaries": [18, 35], "default": 30, "dtype": "int32"},
  "is_new": {"from": "features.is_new", "dtype": "bool", "default": false},
  "recent": {"from": "features.recent", "transform": "list", "length": 3, "pad": "", "dtype": "string", "default": []},
  "cands":  {"from": "candidates", "transform": "list", "dtype": "string", "default": []}}}`

// fullInputs is the metadata of a model taking fullSpec's inputs.
func fullInputs() []oiptest.Tensor {
	return []oiptest.Tensor{
		{Name: "user", Datatype: "INT64", Shape: []int64{-1}},
		{Name: "age", Datatype: "FP32", Shape: []int64{1}},
		{Name: "income", Datatype: "FP64", Shape: []int64{-1}},
		{Name: "age_b", Datatype: "INT32", Shape: []int64{-1}},
		{Name: "is_new", Datatype: "BOOL", Shape: []int64{-1}},
		{Name: "recent", Datatype: "BYTES", Shape: []int64{-1, 3}},
		{Name: "cands", Datatype: "BYTES", Shape: []int64{-1, -1}},
	}
}

// ranker scores the candidates; versions 1 and 2 are served.
func ranker() *oiptest.Model {
	return &oiptest.Model{Name: "ranker", Versions: []string{"1", "2"}, Platform: "onnxruntime_onnx",
		Inputs: fullInputs(), Outputs: []oiptest.Tensor{{Name: "scores", Datatype: "FP32", Shape: []int64{-1, -1}}},
		CandidatesInput: "cands"}
}

// catalogue ranks its own items: ids and scores outputs.
func catalogue() *oiptest.Model {
	return &oiptest.Model{Name: "top", Inputs: fullInputs(),
		Outputs: []oiptest.Tensor{
			{Name: "ids", Datatype: "BYTES", Shape: []int64{-1, -1}},
			{Name: "scores", Datatype: "FP64", Shape: []int64{-1, -1}},
		},
		Catalogue: []string{"a", "b", "c", "d", "e", "f", "g"}, TopN: 5, ScoresDatatype: "FP64", CandidatesInput: "cands"}
}

func startServer(t testing.TB, models ...*oiptest.Model) *oiptest.Server {
	t.Helper()
	s, err := oiptest.Start(models...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

var plan = backendtest.Plan

// protocols are the two protocols, with the server's address of each.
var protocols = []string{oip.ProtocolGRPC, oip.ProtocolHTTP}

func addr(s *oiptest.Server, protocol string) string {
	if protocol == oip.ProtocolHTTP {
		return s.HTTPAddr()
	}
	return s.GRPCAddr()
}

func config(s *oiptest.Server, protocol, model string, p *featurizer.Plan) oip.Config {
	return oip.Config{Target: addr(s, protocol), Protocol: protocol, ModelName: model, ModelVersion: "1",
		Outputs: oip.Outputs{Scores: "scores"}, Inputs: p.Inputs(), Timeout: 2 * time.Second}
}

func open(t testing.TB, cfg oip.Config, validate bool) *oip.Model {
	t.Helper()
	m, err := oip.Open(context.Background(), cfg, validate)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// request builds the backend request for a user and candidates.
func request(t testing.TB, p *featurizer.Plan, user string, cands []string, k int) *backend.Request {
	t.Helper()
	in, err := p.Build(&featurizer.Request{UserID: user, Candidates: cands,
		Features: map[string]any{"age": 41.0, "income": 1234.5, "is_new": true, "recent": []any{"x", "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &backend.Request{Inputs: in, Candidates: cands, K: k}
}

// expected ranks ids by score desc, then id, skipping exclude and repeats,
// at most k.
var expected = backendtest.Ranked

func f32(version string) func(string) float64 {
	return func(id string) float64 { return float64(float32(oiptest.DefaultScore(version, id))) }
}

func f64(version string) func(string) float64 {
	return func(id string) float64 { return oiptest.DefaultScore(version, id) }
}

// Every input goes out as one named tensor with the protocol's datatype,
// the built shape and its elements typed in contents (gRPC) or JSON data
// (HTTP); never in raw_input_contents.
func TestInferRequest(t *testing.T) {
	s := startServer(t, ranker())
	p := plan(t, fullSpec)
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			m := open(t, config(s, protocol, "ranker", p), true)
			cands := []string{"i1", "i2", "i3"}
			if _, err := m.Predict(context.Background(), request(t, p, "u1", cands, 2)); err != nil {
				t.Fatal(err)
			}
			r, ok := s.LastRequest()
			if !ok || r.Protocol != protocol {
				t.Fatalf("last request %+v", r)
			}
			req := r.Infer
			if req.GetModelName() != "ranker" || req.GetModelVersion() != "1" || len(req.GetRawInputContents()) != 0 {
				t.Fatalf("model %q version %q, %d raw contents", req.GetModelName(), req.GetModelVersion(), len(req.GetRawInputContents()))
			}
			if len(req.GetOutputs()) != 1 || req.GetOutputs()[0].GetName() != "scores" {
				t.Fatalf("requested outputs %v", req.GetOutputs())
			}
			byName := map[string]*inference.ModelInferRequest_InferInputTensor{}
			for _, in := range req.GetInputs() {
				byName[in.GetName()] = in
			}
			check := func(name, dt string, shape []int64, got, want any) {
				t.Helper()
				in := byName[name]
				if in == nil || in.GetDatatype() != dt || !slices.Equal(in.GetShape(), shape) {
					t.Fatalf("input %s: %v, want %s %v", name, in, dt, shape)
				}
				if !equalValues(got, want) {
					t.Fatalf("input %s holds %v, want %v", name, got, want)
				}
			}
			c := func(name string) *inference.InferTensorContents { return byName[name].GetContents() }
			check("user", "INT64", []int64{1}, c("user").GetInt64Contents(), []int64{featurizer.HashBucket("u1", 1000)})
			check("age", "FP32", []int64{1}, c("age").GetFp32Contents(), []float32{1.1})
			check("income", "FP64", []int64{1}, c("income").GetFp64Contents(), []float64{1234.5})
			check("age_b", "INT32", []int64{1}, c("age_b").GetIntContents(), []int32{2})
			check("is_new", "BOOL", []int64{1}, c("is_new").GetBoolContents(), []bool{true})
			check("recent", "BYTES", []int64{1, 3}, c("recent").GetBytesContents(), [][]byte{[]byte("x"), []byte("y"), {}})
			check("cands", "BYTES", []int64{1, 3}, c("cands").GetBytesContents(), [][]byte{[]byte("i1"), []byte("i2"), []byte("i3")})
		})
	}
}

func equalValues(got, want any) bool {
	switch w := want.(type) {
	case []int64:
		return slices.Equal(got.([]int64), w)
	case []float32:
		return slices.Equal(got.([]float32), w)
	case []float64:
		return slices.Equal(got.([]float64), w)
	case []int32:
		return slices.Equal(got.([]int32), w)
	case []bool:
		return slices.Equal(got.([]bool), w)
	case [][]byte:
		g := got.([][]byte)
		return slices.EqualFunc(g, w, func(a, b []byte) bool { return string(a) == string(b) })
	}
	return false
}

// Ranking over both protocols, from typed contents, raw_output_contents
// and JSON, in both output modes.
func TestPredictRanking(t *testing.T) {
	p := plan(t, fullSpec)
	cands := []string{"b", "a", "c", "d", "e", "f", "a"}
	cases := []struct {
		name    string
		model   *oiptest.Model
		raw     bool
		ids     string
		exclude []string
		cands   []string
		k       int
		want    []backend.Item
	}{
		{name: "scores", model: ranker(), k: 3, cands: cands, want: expected(cands, f32("1"), nil, 3)},
		{name: "scores raw", model: ranker(), raw: true, k: 3, cands: cands, want: expected(cands, f32("1"), nil, 3)},
		{name: "scores exclude", model: ranker(), k: 10, cands: cands, exclude: []string{"a", "c"},
			want: expected(cands, f32("1"), []string{"a", "c"}, 10)},
		{name: "scores flat fp64", model: func() *oiptest.Model {
			m := ranker()
			m.Flat, m.ScoresDatatype = true, "FP64"
			m.Outputs = []oiptest.Tensor{{Name: "scores", Datatype: "FP64", Shape: []int64{-1}}}
			return m
		}(), k: 4, cands: cands, want: expected(cands, f64("1"), nil, 4)},
		{name: "ids", model: catalogue(), ids: "ids", k: 3,
			want: expected([]string{"a", "b", "c", "d", "e", "f", "g"}, f64("1"), nil, 7)[:3]},
		{name: "ids raw", model: catalogue(), raw: true, ids: "ids", k: 3,
			want: expected([]string{"a", "b", "c", "d", "e", "f", "g"}, f64("1"), nil, 7)[:3]},
		{name: "ids within candidates", model: catalogue(), ids: "ids", k: 5, cands: []string{"a", "b", "c", "d", "e", "f", "g"}[4:],
			exclude: []string{"f"}},
	}
	for _, protocol := range protocols {
		for _, tc := range cases {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				s := startServer(t, tc.model)
				s.SetRawOutput(tc.raw)
				cfg := config(s, protocol, tc.model.Name, p)
				cfg.Outputs.IDs = tc.ids
				m := open(t, cfg, true)
				req := request(t, p, "u1", tc.cands, tc.k)
				if tc.exclude != nil {
					req.Exclude = map[string]struct{}{}
					for _, id := range tc.exclude {
						req.Exclude[id] = struct{}{}
					}
				}
				got, err := m.Predict(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.want
				if tc.name == "ids within candidates" {
					// The catalogue's top 5 that are candidates, minus f.
					top := expected([]string{"a", "b", "c", "d", "e", "f", "g"}, f64("1"), nil, 5)
					want = nil
					for _, it := range top {
						if slices.Contains(tc.cands, it.ID) && it.ID != "f" {
							want = append(want, it)
						}
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got %v\nwant %v", got, want)
				}
			})
		}
	}
}

// An empty candidate list spares the call; none at all is the request's
// fault.
func TestEmptyCandidates(t *testing.T) {
	s := startServer(t, ranker())
	p := plan(t, fullSpec)
	m := open(t, config(s, oip.ProtocolGRPC, "ranker", p), true)
	items, err := m.Predict(context.Background(), request(t, p, "u", []string{}, 3))
	if err != nil || len(items) != 0 || s.Calls("ModelInfer") != 0 {
		t.Fatalf("got %v, %v after %d calls", items, err, s.Calls("ModelInfer"))
	}
	req := request(t, p, "u", nil, 3)
	req.Candidates = nil
	if _, err := m.Predict(context.Background(), req); backend.Classify(err) != backend.ClassRejected {
		t.Fatalf("no candidates: %v", err)
	}
	req = request(t, p, "u", []string{"a"}, 0)
	if _, err := m.Predict(context.Background(), req); !errors.Is(err, oip.ErrBadInput) {
		t.Fatalf("k = 0: %v", err)
	}
}

// Each failure is counted under its class, over both protocols.
func TestFailureClasses(t *testing.T) {
	p := plan(t, fullSpec)
	cases := []struct {
		name  string
		fault oiptest.Fault
		raw   bool
		grpc  bool // gRPC only
		class string
	}{
		{name: "unavailable", fault: oiptest.Fault{Fail: codes.Unavailable}, class: backend.ClassUnavailable},
		{name: "not found", fault: oiptest.Fault{Fail: codes.NotFound}, class: backend.ClassUnavailable},
		{name: "load shed", fault: oiptest.Fault{Fail: codes.ResourceExhausted}, class: backend.ClassUnavailable},
		{name: "invalid argument", fault: oiptest.Fault{Fail: codes.InvalidArgument, Message: "bad user id"}, class: backend.ClassRejected},
		{name: "internal", fault: oiptest.Fault{Fail: codes.Internal}, class: backend.ClassOther},
		{name: "slow", fault: oiptest.Fault{Delay: time.Second}, class: backend.ClassDeadline},
		{name: "server deadline", fault: oiptest.Fault{Fail: codes.DeadlineExceeded}, class: backend.ClassDeadline},
		{name: "wrong datatype", fault: oiptest.Fault{BadOutput: oiptest.WrongDatatype}, class: backend.ClassBadOutput},
		{name: "wrong shape", fault: oiptest.Fault{BadOutput: oiptest.WrongShape}, class: backend.ClassBadOutput},
		{name: "wrong shape raw", fault: oiptest.Fault{BadOutput: oiptest.WrongShape}, raw: true, grpc: true, class: backend.ClassBadOutput},
		{name: "missing scores", fault: oiptest.Fault{BadOutput: oiptest.MissingScores}, class: backend.ClassBadOutput},
		{name: "NaN score", fault: oiptest.Fault{BadOutput: oiptest.NaNScore}, grpc: true, class: backend.ClassBadOutput},
		{name: "malformed", fault: oiptest.Fault{BadOutput: oiptest.Malformed}, raw: true, class: backend.ClassBadOutput},
	}
	for _, protocol := range protocols {
		for _, tc := range cases {
			if tc.grpc && protocol != oip.ProtocolGRPC {
				continue
			}
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				s := startServer(t, ranker())
				cfg := config(s, protocol, "ranker", p)
				cfg.Timeout = 100 * time.Millisecond
				m := open(t, cfg, true)
				s.SetFault(tc.fault)
				s.SetRawOutput(tc.raw)
				_, err := m.Predict(context.Background(), request(t, p, "u", []string{"a", "b"}, 2))
				if got := backend.Classify(err); got != tc.class {
					t.Fatalf("class %q (%v), want %q", got, err, tc.class)
				}
				if tc.class == backend.ClassRejected {
					var ie *backend.InputError
					if !errors.As(err, &ie) || ie.Msg != "bad user id" || !errors.Is(err, oip.ErrBadInput) {
						t.Fatalf("%v: want the server's message in an InputError", err)
					}
				}
				if tc.class == backend.ClassUnavailable && m.Healthy() {
					t.Fatal("an unavailable server leaves the model healthy")
				}
			})
		}
	}
}

// A stopped server (connection refused) is unavailable, within the
// deadline.
func TestStoppedServerIsUnavailable(t *testing.T) {
	p := plan(t, fullSpec)
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			s := startServer(t, ranker())
			m := open(t, config(s, protocol, "ranker", p), true)
			s.Stop()
			start := time.Now()
			_, err := m.Predict(context.Background(), request(t, p, "u", []string{"a"}, 1))
			if backend.Classify(err) != backend.ClassUnavailable || time.Since(start) > 2*time.Second {
				t.Fatalf("%v after %s, want unavailable", err, time.Since(start))
			}
			if m.Healthy() {
				t.Fatal("still healthy")
			}
		})
	}
}

// The caller's cancellation is canceled, not the server's fault.
func TestCanceled(t *testing.T) {
	s := startServer(t, ranker())
	p := plan(t, fullSpec)
	for _, protocol := range protocols {
		m := open(t, config(s, protocol, "ranker", p), true)
		s.SetFault(oiptest.Fault{Delay: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := m.Predict(ctx, request(t, p, "u", []string{"a"}, 1))
		if backend.Classify(err) != backend.ClassCanceled {
			t.Fatalf("%s: %v, want canceled", protocol, err)
		}
		s.SetFault(oiptest.Fault{})
	}
}

// Health follows ModelReady: a model that is not ready, or a server that
// is down at start-up, is unhealthy until a poll finds it ready.
func TestHealth(t *testing.T) {
	p := plan(t, fullSpec)
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			s := startServer(t, ranker())
			cfg := config(s, protocol, "ranker", p)
			cfg.HealthInterval = 20 * time.Millisecond
			m := open(t, cfg, true)
			if !m.Healthy() {
				t.Fatal("a validated model starts unhealthy")
			}
			s.SetReady("ranker", false)
			waitFor(t, func() bool { return !m.Healthy() })
			if err := m.HealthError(); err == nil || !strings.Contains(err.Error(), "not ready") {
				t.Fatalf("health error %v", err)
			}
			s.SetReady("ranker", true)
			waitFor(t, m.Healthy)
			if protocol == oip.ProtocolHTTP { // readiness said in the body of a 200
				s.SetReadyBody(true)
				s.SetReady("ranker", false)
				waitFor(t, func() bool { return !m.Healthy() })
				s.SetReady("ranker", true)
				waitFor(t, m.Healthy)
			}

			// At start-up, with the server down: unhealthy, not an error.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			down := l.Addr().String()
			l.Close()
			cfg.Target = down
			m2 := open(t, cfg, false)
			// Once a poll has failed (its error replaces "no health check
			// has succeeded yet"), the model is still unhealthy.
			waitFor(t, func() bool {
				err := m2.HealthError()
				return err != nil && !strings.Contains(err.Error(), "no health check has succeeded yet")
			})
			if m2.Healthy() {
				t.Fatal("a model on a stopped server is healthy")
			}
			// Unvalidated on a live server: healthy after the first poll.
			cfg.Target = addr(s, protocol)
			m3 := open(t, cfg, false)
			waitFor(t, m3.Healthy)
		})
	}
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool) { t.Helper(); testenv.WaitFor(t, 5*time.Second, cond) }

// The W3C traceparent of the caller's span goes to the server with the
// inference call, over both protocols.
func TestTraceparent(t *testing.T) {
	s := startServer(t, ranker())
	p := plan(t, fullSpec)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, protocol := range protocols {
		m := open(t, config(s, protocol, "ranker", p), true)
		ctx := trace.ContextWithSpanContext(context.Background(), sc)
		if _, err := m.Predict(ctx, request(t, p, "u", []string{"a"}, 1)); err != nil {
			t.Fatal(err)
		}
		r, _ := s.LastRequest()
		if got := r.Header["traceparent"]; len(got) != 1 || got[0] != want {
			t.Fatalf("%s: traceparent %v, want %s", protocol, got, want)
		}
		// Without a span, none.
		if _, err := m.Predict(context.Background(), request(t, p, "u", []string{"a"}, 1)); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.LastRequest(); r.Header["traceparent"] != nil {
			t.Fatalf("%s: traceparent %v without a span", protocol, r.Header["traceparent"])
		}
	}
}

// Registration checks the server: live, the model ready, every input of
// the feature spec with its datatype and shape, and the mapped outputs.
// Every mismatch names its field.
func TestValidate(t *testing.T) {
	s := startServer(t, ranker(), catalogue())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	withInputs := func(f func(in []oiptest.Tensor) []oiptest.Tensor) *oiptest.Model {
		m := ranker()
		m.Name = "changed"
		m.Inputs = f(m.Inputs)
		return m
	}
	cases := []struct {
		name   string
		model  *oiptest.Model // replaces "changed"
		change func(c *oip.Config)
		field  string
		msg    string
	}{
		{name: "target down", change: func(c *oip.Config) { c.Target = down }, field: "backend.target", msg: "unreachable"},
		{name: "unknown model", change: func(c *oip.Config) { c.ModelName = "nope" }, field: "backend.model_version", msg: "nope"},
		{name: "unknown model without version", change: func(c *oip.Config) { c.ModelName, c.ModelVersion = "nope", "" }, field: "backend.model_name", msg: "nope"},
		{name: "unknown version", change: func(c *oip.Config) { c.ModelVersion = "9" }, field: "backend.model_version", msg: "9"},
		{name: "not ready", model: func() *oiptest.Model { m := ranker(); m.Name, m.NotReady = "changed", true; return m }(),
			field: "backend.model_version", msg: "not ready"},
		{name: "missing input", model: withInputs(func(in []oiptest.Tensor) []oiptest.Tensor { return in[1:] }),
			field: "features.inputs.user", msg: `no input "user"`},
		{name: "wrong datatype", model: withInputs(func(in []oiptest.Tensor) []oiptest.Tensor { in[0].Datatype = "INT32"; return in }),
			field: "features.inputs.user", msg: "INT32"},
		{name: "bool datatype", model: withInputs(func(in []oiptest.Tensor) []oiptest.Tensor { in[4].Datatype = "INT8"; return in }),
			field: "features.inputs.is_new", msg: "BOOL"},
		{name: "list where a scalar is built", model: withInputs(func(in []oiptest.Tensor) []oiptest.Tensor { in[0].Shape = []int64{-1, 4}; return in }),
			field: "features.inputs.user", msg: "scalar"},
		{name: "list length", model: withInputs(func(in []oiptest.Tensor) []oiptest.Tensor { in[5].Shape = []int64{-1, 5}; return in }),
			field: "features.inputs.recent", msg: "length 3"},
		{name: "batch dimension", model: withInputs(func(in []oiptest.Tensor) []oiptest.Tensor { in[2].Shape = []int64{8}; return in }),
			field: "features.inputs.income", msg: "batch dimension is 8"},
		{name: "missing scores", change: func(c *oip.Config) { c.Outputs.Scores = "probabilities" }, field: "backend.outputs.scores", msg: `no output "probabilities"`},
		{name: "scores datatype", model: func() *oiptest.Model {
			m := ranker()
			m.Name, m.Outputs = "changed", []oiptest.Tensor{{Name: "scores", Datatype: "INT64", Shape: []int64{-1, -1}}}
			return m
		}(), field: "backend.outputs.scores", msg: "want FP32 or FP64"},
		{name: "scores shape", model: func() *oiptest.Model {
			m := ranker()
			m.Name, m.Outputs = "changed", []oiptest.Tensor{{Name: "scores", Datatype: "FP32", Shape: []int64{4, -1}}}
			return m
		}(), field: "backend.outputs.scores", msg: "[4, -1]"},
		{name: "missing ids", change: func(c *oip.Config) { c.Outputs.IDs = "ids" }, field: "backend.outputs.ids", msg: `no output "ids"`},
		{name: "ids datatype", change: func(c *oip.Config) { c.ModelName, c.ModelVersion, c.Outputs.IDs = "top", "", "scores2" },
			model: func() *oiptest.Model { m := catalogue(); m.Name = "changed"; return m }(), field: "backend.outputs.ids", msg: `no output "scores2"`},
	}
	for _, protocol := range protocols {
		for _, tc := range cases {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				cfg := config(s, protocol, "ranker", plan(t, fullSpec))
				cfg.Timeout = time.Second
				if tc.model != nil {
					s.SetModel(tc.model)
					cfg.ModelName = "changed"
				}
				if tc.change != nil {
					tc.change(&cfg)
				}
				m, err := oip.Open(context.Background(), cfg, true)
				if err == nil {
					m.Close()
					t.Fatal("accepted")
				}
				f := fault.As(err)
				if f == nil || f.Code != "invalid_model" || f.Field != tc.field || !strings.Contains(f.Message, tc.msg) {
					t.Fatalf("got %v, want invalid_model on %s mentioning %q", err, tc.field, tc.msg)
				}
			})
		}
	}
	// The right model passes over both protocols.
	for _, protocol := range protocols {
		cfg := config(s, protocol, "top", plan(t, fullSpec))
		cfg.ModelVersion, cfg.Outputs.IDs = "", "ids"
		open(t, cfg, true)
	}
}

// A stopped server at start-up gives an unhealthy model, not an error; a
// config the Spec would refuse is refused.
func TestOpenChecksTheConfig(t *testing.T) {
	cases := []struct {
		cfg   oip.Config
		field string
	}{
		{oip.Config{ModelName: "m", Outputs: oip.Outputs{Scores: "s"}}, "backend.target"},
		{oip.Config{Target: "h:1", Outputs: oip.Outputs{Scores: "s"}}, "backend.model_name"},
		{oip.Config{Target: "h:1", ModelName: "m"}, "backend.outputs.scores"},
		{oip.Config{Target: "h:1", ModelName: "m", Protocol: "rest", Outputs: oip.Outputs{Scores: "s"}}, "backend.protocol"},
	}
	for _, tc := range cases {
		_, err := oip.Open(context.Background(), tc.cfg, false)
		if f := fault.As(err); f == nil || f.Field != tc.field {
			t.Errorf("%+v: %v, want an error on %s", tc.cfg, err, tc.field)
		}
	}
}

// BenchmarkPredict is one inference call through the fake server, over
// each protocol, against the number of candidates.
func BenchmarkPredict(b *testing.B) {
	p := plan(b, fullSpec)
	for _, protocol := range protocols {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/candidates=%d", protocol, n), func(b *testing.B) {
				s := startServer(b, ranker())
				m := open(b, config(s, protocol, "ranker", p), true)
				cands := make([]string, n)
				for i := range cands {
					cands[i] = fmt.Sprintf("item-%05d", i)
				}
				req := request(b, p, "u", cands, 10)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Predict(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
