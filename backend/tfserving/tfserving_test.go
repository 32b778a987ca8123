package tfserving_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

const (
	dtFloat  = framework.DataType_DT_FLOAT
	dtDouble = framework.DataType_DT_DOUBLE
	dtInt32  = framework.DataType_DT_INT32
	dtInt64  = framework.DataType_DT_INT64
	dtString = framework.DataType_DT_STRING
	dtBool   = framework.DataType_DT_BOOL
)

// rankerSpec is the feature spec of the ranker models: a user id bucket and
// the candidates.
const rankerSpec = `{"inputs": {
  "user":  {"from": "user_id", "transform": "hash_bucket", "buckets": 1000, "dtype": "int64"},
  "cands": {"from": "candidates", "transform": "list", "dtype": "string", "default": []}}}`

func rankerSignature() *tfpb.SignatureDef {
	return tfservingtest.Signature(
		map[string]tfservingtest.Spec{"user": {DType: dtInt64, Shape: []int64{-1}}, "cands": {DType: dtString, Shape: []int64{-1, -1}}},
		map[string]tfservingtest.Spec{"scores": {DType: dtFloat, Shape: []int64{-1, -1}}})
}

// ranker scores the candidates; versions 1-3 are AVAILABLE, 4 is LOADING.
func ranker() *tfservingtest.Model {
	return &tfservingtest.Model{
		Name:            "ranker",
		Versions:        map[int64]tfservingtest.State{1: tfservingtest.StateAvailable, 2: tfservingtest.StateAvailable, 3: tfservingtest.StateAvailable, 4: tfservingtest.StateLoading},
		Labels:          map[string]int64{"stable": 1, "canary": 2, "next": 4},
		Signatures:      map[string]*tfpb.SignatureDef{"serving_default": rankerSignature()},
		CandidatesInput: "cands",
	}
}

func startServer(t testing.TB, models ...*tfservingtest.Model) *tfservingtest.Server {
	t.Helper()
	s, err := tfservingtest.Start(models...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

var plan = backendtest.Plan

func open(t testing.TB, pool *tfserving.Pool, cfg tfserving.Config, validate bool) *tfserving.Model {
	t.Helper()
	m, err := pool.Open(context.Background(), cfg, validate)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func rankerConfig(addr string, p *featurizer.Plan) tfserving.Config {
	return tfserving.Config{Target: addr, ModelName: "ranker", Version: 1, Outputs: tfserving.Outputs{Scores: "scores"},
		Inputs: p.Inputs(), Timeout: 2 * time.Second}
}

// request builds the backend request for a user and candidates.
func request(t testing.TB, p *featurizer.Plan, user string, cands []string, k int) *backend.Request {
	t.Helper()
	in, err := p.Build(&featurizer.Request{UserID: user, Candidates: cands})
	if err != nil {
		t.Fatal(err)
	}
	return &backend.Request{Inputs: in, Candidates: cands, K: k}
}

// expected ranks ids by score desc, then id, skipping exclude and repeats,
// at most k.
var expected = backendtest.Ranked

func TestPredictWireFormat(t *testing.T) {
	const spec = `{"inputs": {
	  "f32":   {"from": "features.f32", "dtype": "float32"},
	  "f64":   {"from": "features.f64", "transform": "list", "length": 3, "dtype": "float64"},
	  "i32":   {"from": "features.i32", "dtype": "int32"},
	  "i64":   {"from": "features.i64", "transform": "list", "dtype": "int64"},
	  "s":     {"from": "context.surface", "dtype": "string"},
	  "b":     {"from": "features.b", "dtype": "bool"},
	  "cands": {"from": "candidates", "transform": "list", "dtype": "string"}}}`
	sig := tfservingtest.Signature(map[string]tfservingtest.Spec{
		"f32": {DType: dtFloat, Shape: []int64{-1}}, "f64": {DType: dtDouble, Shape: []int64{-1, 3}},
		"i32": {DType: dtInt32, Shape: []int64{-1}}, "i64": {DType: dtInt64, Shape: nil},
		"s": {DType: dtString, Shape: []int64{1}}, "b": {DType: dtBool, Shape: []int64{-1}},
		"cands": {DType: dtString, Shape: []int64{-1, -1}},
	}, map[string]tfservingtest.Spec{"scores": {DType: dtFloat, Shape: []int64{-1, -1}}, "other": {DType: dtFloat}})
	srv := startServer(t, &tfservingtest.Model{
		Name:            "wire",
		Versions:        map[int64]tfservingtest.State{5: tfservingtest.StateAvailable, 6: tfservingtest.StateAvailable},
		Labels:          map[string]int64{"canary": 5},
		Signatures:      map[string]*tfpb.SignatureDef{"serving_default": sig, "rank": sig},
		CandidatesInput: "cands",
	})
	p := plan(t, spec)
	freq := &featurizer.Request{
		Context:    map[string]string{"surface": "music"},
		Features:   map[string]any{"f32": 1.5, "f64": []any{0.25, -1.0}, "i32": -7.0, "i64": []any{1.0, -2.0, float64(int64(1) << 40)}, "b": true},
		Candidates: []string{"a", "b", "ç"},
	}
	inputs, err := p.Build(freq)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		dtype framework.DataType
		shape []int64
		vals  any
	}
	wantInputs := map[string]want{
		"f32":   {dtFloat, []int64{1}, []float32{1.5}},
		"f64":   {dtDouble, []int64{1, 3}, []float64{0.25, -1, 0}},
		"i32":   {dtInt32, []int64{1}, []int32{-7}},
		"i64":   {dtInt64, []int64{1, 3}, []int64{1, -2, 1 << 40}},
		"s":     {dtString, []int64{1}, []string{"music"}},
		"b":     {dtBool, []int64{1}, []bool{true}},
		"cands": {dtString, []int64{1, 3}, []string{"a", "b", "ç"}},
	}

	tests := []struct {
		name      string
		version   int64
		label     string
		signature string
		wantSig   string
		check     func(*apis.ModelSpec) bool
	}{
		{"version", 6, "", "", "serving_default", func(s *apis.ModelSpec) bool {
			return s.GetVersion() != nil && s.GetVersion().GetValue() == 6 && s.GetVersionLabel() == ""
		}},
		{"label", 0, "canary", "rank", "rank", func(s *apis.ModelSpec) bool {
			return s.GetVersion() == nil && s.GetVersionLabel() == "canary"
		}},
		{"latest", 0, "", "serving_default", "serving_default", func(s *apis.ModelSpec) bool {
			return s.GetVersion() == nil && s.GetVersionLabel() == ""
		}},
	}
	pool := tfserving.NewPool()
	defer pool.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tfserving.Config{Target: srv.Addr(), ModelName: "wire", Version: tc.version, VersionLabel: tc.label,
				SignatureName: tc.signature, Outputs: tfserving.Outputs{Scores: "scores"}, Inputs: p.Inputs()}
			m := open(t, pool, cfg, true)
			if _, err := m.Predict(context.Background(), &backend.Request{Inputs: inputs, Candidates: freq.Candidates, K: 10}); err != nil {
				t.Fatalf("Predict: %v", err)
			}
			got := srv.LastRequest()
			spec := got.GetModelSpec()
			if spec.GetName() != "wire" || spec.GetSignatureName() != tc.wantSig || !tc.check(spec) {
				t.Errorf("model_spec = %v, want name wire, signature %q, version %d, label %q", spec, tc.wantSig, tc.version, tc.label)
			}
			if !slices.Equal(got.GetOutputFilter(), []string{"scores"}) {
				t.Errorf("output_filter = %q, want [scores]", got.GetOutputFilter())
			}
			if len(got.GetInputs()) != len(wantInputs) {
				t.Errorf("got %d inputs, want %d", len(got.GetInputs()), len(wantInputs))
			}
			for name, w := range wantInputs {
				tp := got.GetInputs()[name]
				if tp == nil {
					t.Errorf("input %q missing", name)
					continue
				}
				if tp.GetDtype() != w.dtype {
					t.Errorf("%s: dtype %s, want %s", name, tp.GetDtype(), w.dtype)
				}
				var dims []int64
				for _, d := range tp.GetTensorShape().GetDim() {
					dims = append(dims, d.GetSize())
				}
				if !slices.Equal(dims, w.shape) {
					t.Errorf("%s: shape %v, want %v", name, dims, w.shape)
				}
				if got, want := wireValues(t, tp), fmt.Sprint(w.vals); got != want {
					t.Errorf("%s: values %s, want %s", name, got, want)
				}
			}
		})
	}
}

// wireValues decodes a tensor's values, insisting on the documented
// encoding: tensor_content for numbers, string_val for strings, bool_val for
// bools, and nothing else set.
func wireValues(t *testing.T, tp *framework.TensorProto) string {
	t.Helper()
	c := tp.GetTensorContent()
	typed := len(tp.GetFloatVal()) + len(tp.GetDoubleVal()) + len(tp.GetIntVal()) + len(tp.GetInt64Val()) + len(tp.GetStringVal()) + len(tp.GetBoolVal()) + len(tp.GetHalfVal())
	switch tp.GetDtype() {
	case dtFloat, dtDouble, dtInt32, dtInt64:
		if typed != 0 {
			t.Errorf("numeric tensor has %d typed values, want tensor_content only", typed)
		}
	case dtString:
		if len(c) != 0 || typed != len(tp.GetStringVal()) {
			t.Errorf("string tensor: want string_val only")
		}
		var ss []string
		for _, b := range tp.GetStringVal() {
			ss = append(ss, string(b))
		}
		return fmt.Sprint(ss)
	case dtBool:
		if len(c) != 0 || typed != len(tp.GetBoolVal()) {
			t.Errorf("bool tensor: want bool_val only")
		}
		return fmt.Sprint(tp.GetBoolVal())
	}
	switch tp.GetDtype() {
	case dtFloat:
		v := make([]float32, len(c)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(c[4*i:]))
		}
		return fmt.Sprint(v)
	case dtDouble:
		v := make([]float64, len(c)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(c[8*i:]))
		}
		return fmt.Sprint(v)
	case dtInt32:
		v := make([]int32, len(c)/4)
		for i := range v {
			v[i] = int32(binary.LittleEndian.Uint32(c[4*i:]))
		}
		return fmt.Sprint(v)
	default:
		v := make([]int64, len(c)/8)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(c[8*i:]))
		}
		return fmt.Sprint(v)
	}
}

func TestVersionLabelRouting(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	cands := []string{"i1", "i2", "i3", "i4", "i5"}
	for _, tc := range []struct {
		label       string
		wantVersion int64
	}{{"stable", 1}, {"canary", 2}} {
		t.Run(tc.label, func(t *testing.T) {
			cfg := rankerConfig(srv.Addr(), p)
			cfg.Version, cfg.VersionLabel = 0, tc.label
			m := open(t, pool, cfg, true)
			items, err := m.Predict(context.Background(), request(t, p, "u1", cands, 5))
			if err != nil {
				t.Fatal(err)
			}
			want := expected(cands, func(id string) float64 {
				return float64(float32(tfservingtest.DefaultScore(tc.wantVersion, id)))
			}, nil, 5)
			if !slices.Equal(items, want) {
				t.Errorf("label %q: items %v, want version %d's %v", tc.label, items, tc.wantVersion, want)
			}
		})
	}
}

func TestPredictRanking(t *testing.T) {
	// Scores with ties, so that the id order of equal scores is tested.
	table := map[string]float64{"a": 0.5, "b": 0.9, "c": 0.5, "d": 0.1, "e": 0.7, "f": 0.5, "g": 0.3}
	score := func(_ int64, id string) float64 { return table[id] }
	catalogue := []string{"g", "f", "e", "d", "c", "b", "a"}
	cands := []string{"a", "b", "c", "d", "e", "f"}
	tests := []struct {
		name    string
		model   tfservingtest.Model
		ids     string
		cands   []string
		exclude []string
		k       int
		pool    []string // what the expected items are ranked from
	}{
		{name: "scores float [1,C]", k: 4, pool: cands},
		{name: "scores double [C]", model: tfservingtest.Model{ScoresDType: dtDouble, Flat: true}, k: 3, pool: cands},
		{name: "scores tensor_content", model: tfservingtest.Model{TensorContent: true}, k: 10, pool: cands},
		{name: "scores double tensor_content", model: tfservingtest.Model{TensorContent: true, ScoresDType: dtDouble}, k: 2, pool: cands},
		{name: "scores with exclude", exclude: []string{"b", "e"}, k: 3, pool: cands},
		{name: "scores duplicate candidates", cands: []string{"b", "a", "b", "c", "e", "e"}, k: 3, pool: []string{"a", "b", "c", "e"}},
		{name: "ids+scores", model: tfservingtest.Model{Catalogue: catalogue}, ids: "ids", k: 5, pool: catalogue},
		{name: "ids+scores top 3 of model", model: tfservingtest.Model{Catalogue: catalogue, TopN: 3}, ids: "ids", k: 5, pool: []string{"b", "e", "f"}}, // the server breaks ties by catalogue order
		{name: "ids+scores tensor_content flat", model: tfservingtest.Model{Catalogue: catalogue, TensorContent: true, Flat: true}, ids: "ids", k: 4, pool: catalogue},
		{name: "ids+scores within candidates", model: tfservingtest.Model{Catalogue: catalogue}, ids: "ids", cands: []string{"g", "d", "zz"}, k: 5, pool: []string{"g", "d"}},
		{name: "ids+scores with exclude", model: tfservingtest.Model{Catalogue: catalogue}, ids: "ids", exclude: []string{"b"}, k: 2, pool: catalogue},
		{name: "ids+scores duplicate ids", model: tfservingtest.Model{Catalogue: []string{"b", "a", "b", "e", "b", "c"}}, ids: "ids", k: 3, pool: []string{"a", "b", "c", "e"}},
	}
	pool := tfserving.NewPool()
	defer pool.Close()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mod := tc.model
			mod.Name = fmt.Sprintf("m%d", i)
			mod.Versions = map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}
			mod.Score = score
			outs := map[string]tfservingtest.Spec{"scores": {DType: dtFloat}}
			if tc.ids != "" {
				outs["ids"] = tfservingtest.Spec{DType: dtString}
			}
			if tc.model.ScoresDType == dtDouble {
				outs["scores"] = tfservingtest.Spec{DType: dtDouble}
			}
			mod.Signatures = map[string]*tfpb.SignatureDef{"serving_default": tfservingtest.Signature(
				map[string]tfservingtest.Spec{"user": {DType: dtInt64}, "cands": {DType: dtString}}, outs)}
			mod.CandidatesInput = "cands"
			srv := startServer(t, &mod)
			p := plan(t, rankerSpec)
			cfg := rankerConfig(srv.Addr(), p)
			cfg.ModelName, cfg.Outputs.IDs = mod.Name, tc.ids
			m := open(t, pool, cfg, true)
			c := tc.cands
			if c == nil && tc.ids == "" {
				c = cands
			}
			req := request(t, p, "u", c, tc.k)
			if len(tc.exclude) > 0 {
				req.Exclude = map[string]struct{}{}
				for _, x := range tc.exclude {
					req.Exclude[x] = struct{}{}
				}
			}
			items, err := m.Predict(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want := expected(tc.pool, func(id string) float64 { return float64(float32(table[id])) }, tc.exclude, tc.k)
			if tc.model.ScoresDType == dtDouble {
				want = expected(tc.pool, func(id string) float64 { return table[id] }, tc.exclude, tc.k)
			}
			if !slices.Equal(items, want) {
				t.Errorf("items %v\nwant  %v", items, want)
			}
		})
	}
}

func TestPredictErrors(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	cfg := rankerConfig(srv.Addr(), p)
	cfg.Timeout = 200 * time.Millisecond
	m := open(t, pool, cfg, true)
	cands := []string{"a", "b", "c"}

	tests := []struct {
		name      string
		fault     tfservingtest.Fault
		ctx       func() (context.Context, context.CancelFunc)
		noCands   bool
		wantClass string
		wantIs    error
		wantMsg   string // the backend's own words, for a rejected input
		maxTime   time.Duration
	}{
		{name: "wrong dtype", fault: tfservingtest.Fault{BadOutput: tfservingtest.WrongDType}, wantClass: "bad_output", wantIs: backend.ErrBadOutput},
		{name: "wrong shape", fault: tfservingtest.Fault{BadOutput: tfservingtest.WrongShape}, wantClass: "bad_output", wantIs: backend.ErrBadOutput},
		{name: "missing output", fault: tfservingtest.Fault{BadOutput: tfservingtest.MissingScore}, wantClass: "bad_output", wantIs: backend.ErrBadOutput},
		{name: "timeout", fault: tfservingtest.Fault{Delay: 5 * time.Second}, wantClass: "deadline", wantIs: tfserving.ErrDeadline, maxTime: 200*time.Millisecond + 300*time.Millisecond},
		{name: "caller deadline", fault: tfservingtest.Fault{Delay: 5 * time.Second}, wantClass: "deadline", wantIs: context.DeadlineExceeded, maxTime: 50*time.Millisecond + 300*time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			}},
		{name: "caller cancels", fault: tfservingtest.Fault{Delay: 5 * time.Second}, wantClass: "canceled", wantIs: context.Canceled, maxTime: 300 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(30*time.Millisecond, cancel)
				return ctx, cancel
			}},
		{name: "server unavailable", fault: tfservingtest.Fault{Fail: codes.Unavailable}, wantClass: "unavailable", wantIs: backend.ErrUnavailable},
		{name: "version not found", fault: tfservingtest.Fault{Fail: codes.NotFound}, wantClass: "unavailable", wantIs: backend.ErrUnavailable},
		{name: "server deadline", fault: tfservingtest.Fault{Fail: codes.DeadlineExceeded}, wantClass: "deadline", wantIs: tfserving.ErrDeadline},
		{name: "invalid argument", fault: tfservingtest.Fault{Fail: codes.InvalidArgument, Message: "Expected shape [1,3]"},
			wantClass: "rejected_input", wantIs: backend.ErrRejectedInput, wantMsg: "Expected shape [1,3]"},
		{name: "no candidates", wantClass: "rejected_input", wantIs: tfserving.ErrBadInput, noCands: true},
		{name: "failed precondition", fault: tfservingtest.Fault{Fail: codes.FailedPrecondition}, wantClass: "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetFault(tc.fault)
			defer srv.SetFault(tfservingtest.Fault{})
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			req := request(t, p, "u", cands, 3)
			if tc.noCands {
				req.Candidates = nil
			}
			start := time.Now()
			items, err := m.Predict(ctx, req)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatalf("Predict = %v, want an error", items)
			}
			if got := tfserving.Classify(err); got != tc.wantClass {
				t.Errorf("Classify(%v) = %q, want %q", err, got, tc.wantClass)
			}
			if got := backend.Classify(err); got != tc.wantClass {
				t.Errorf("backend.Classify(%v) = %q, want %q", err, got, tc.wantClass)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tc.wantIs)
			}
			var ie *backend.InputError
			if errors.As(err, &ie) != (tc.wantClass == "rejected_input") {
				t.Errorf("error %v: *backend.InputError in its chain = %v, want %v", err, ie != nil, tc.wantClass == "rejected_input")
			}
			if tc.wantMsg != "" && (ie == nil || ie.Msg != tc.wantMsg) {
				t.Errorf("error %v: backend message %+v, want %q", err, ie, tc.wantMsg)
			}
			if tc.maxTime > 0 && elapsed > tc.maxTime {
				t.Errorf("took %s, want at most %s", elapsed, tc.maxTime)
			}
		})
	}
	// The model still works afterwards.
	if _, err := m.Predict(context.Background(), request(t, p, "u", cands, 3)); err != nil {
		t.Errorf("Predict after faults: %v", err)
	}
}

func TestStoppedServerIsUnavailable(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	m := open(t, pool, rankerConfig(srv.Addr(), p), true)
	req := request(t, p, "u", []string{"a", "b"}, 2)
	if _, err := m.Predict(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err := m.Predict(context.Background(), req)
	if got := tfserving.Classify(err); got != "unavailable" || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Predict on a stopped server: %v (class %q), want unavailable", err, got)
	}
	if m.Healthy() {
		t.Error("Healthy() = true right after Predict found the server unavailable")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Predict succeeds after restart", func() bool {
		_, err := m.Predict(context.Background(), req)
		return err == nil
	})
}

func TestStopMidTraffic(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	cfg := rankerConfig(srv.Addr(), p)
	cfg.HealthInterval = 20 * time.Millisecond
	m := open(t, pool, cfg, true)
	req := request(t, p, "u", []string{"a", "b", "c"}, 2)

	ctx, stop := context.WithCancel(context.Background())
	type result struct {
		ok      int
		classes map[string]int
	}
	results := make(chan result)
	for range 4 {
		go func() {
			r := result{classes: map[string]int{}}
			for ctx.Err() == nil {
				if _, err := m.Predict(context.Background(), req); err != nil {
					r.classes[tfserving.Classify(err)]++
				} else {
					r.ok++
				}
			}
			results <- r
		}()
	}
	time.Sleep(50 * time.Millisecond)
	srv.Stop()
	eventually(t, "unhealthy after stop", func() bool { return !m.Healthy() })
	time.Sleep(50 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "healthy after restart", m.Healthy)
	before := srv.Calls("Predict")
	eventually(t, "traffic flows after restart", func() bool { return srv.Calls("Predict") > before+10 })
	stop()
	total := result{classes: map[string]int{}}
	for range 4 {
		r := <-results
		total.ok += r.ok
		for c, n := range r.classes {
			total.classes[c] += n
		}
	}
	if total.ok == 0 {
		t.Error("no Predict succeeded")
	}
	for c, n := range total.classes {
		if c != "unavailable" {
			t.Errorf("%d errors of class %q while the server was stopped, want only unavailable", n, c)
		}
	}
	t.Logf("ok %d, errors %v", total.ok, total.classes)
}

func TestHealth(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	cfg := rankerConfig(srv.Addr(), p)
	cfg.HealthInterval = 20 * time.Millisecond

	t.Run("stop and restart", func(t *testing.T) {
		m := open(t, pool, cfg, true)
		if !m.Healthy() {
			t.Fatal("not healthy after validation")
		}
		srv.Stop()
		eventually(t, "unhealthy after Stop", func() bool { return !m.Healthy() })
		if m.HealthError() == nil {
			t.Error("HealthError() = nil while unhealthy")
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "healthy after Restart", m.Healthy)
		if err := m.HealthError(); err != nil {
			t.Errorf("HealthError() = %v while healthy", err)
		}
	})
	t.Run("version state", func(t *testing.T) {
		m := open(t, pool, cfg, true)
		srv.SetVersionState("ranker", 1, tfservingtest.StateUnloading)
		eventually(t, "unhealthy when UNLOADING", func() bool { return !m.Healthy() })
		srv.SetVersionState("ranker", 1, tfservingtest.StateAvailable)
		eventually(t, "healthy when AVAILABLE again", m.Healthy)
	})
	t.Run("version label", func(t *testing.T) {
		lcfg := cfg
		lcfg.Version, lcfg.VersionLabel = 0, "canary"
		m := open(t, pool, lcfg, true)
		srv.SetVersionState("ranker", 2, tfservingtest.StateUnloading)
		eventually(t, "unhealthy when the labelled version unloads", func() bool { return !m.Healthy() })
		srv.SetVersionState("ranker", 2, tfservingtest.StateAvailable)
		eventually(t, "healthy when it is AVAILABLE again", m.Healthy)
	})
	t.Run("start-up with the server down", func(t *testing.T) {
		srv.Stop()
		m, err := pool.Open(context.Background(), cfg, false)
		if err != nil {
			t.Fatalf("Open without validation on a down server: %v", err)
		}
		defer m.Close()
		if m.Healthy() {
			t.Error("healthy before any health check")
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "healthy once the server is up", m.Healthy)
	})
	t.Run("close", func(t *testing.T) {
		m := open(t, pool, cfg, false)
		eventually(t, "healthy", m.Healthy)
		m.Close()
		n := srv.Calls("GetModelStatus")
		time.Sleep(5 * cfg.HealthInterval)
		if got := srv.Calls("GetModelStatus"); got != n {
			t.Errorf("%d health polls after Close", got-n)
		}
		if m.Healthy() {
			t.Error("healthy after Close")
		}
	})
}

func TestValidate(t *testing.T) {
	// "other" has a signature with every kind of mismatch.
	other := ranker()
	other.Name = "other"
	other.Signatures = map[string]*tfpb.SignatureDef{
		"serving_default": rankerSignature(),
		"no_user": tfservingtest.Signature(
			map[string]tfservingtest.Spec{"cands": {DType: dtString, Shape: []int64{-1, -1}}},
			map[string]tfservingtest.Spec{"scores": {DType: dtFloat}}),
		"int32_user": tfservingtest.Signature(
			map[string]tfservingtest.Spec{"user": {DType: dtInt32, Shape: []int64{-1}}, "cands": {DType: dtString, Shape: []int64{-1, -1}}},
			map[string]tfservingtest.Spec{"scores": {DType: dtFloat}}),
		"scalar_cands": tfservingtest.Signature(
			map[string]tfservingtest.Spec{"user": {DType: dtInt64, Shape: []int64{-1}}, "cands": {DType: dtString, Shape: []int64{-1}}},
			map[string]tfservingtest.Spec{"scores": {DType: dtFloat}}),
		"fixed_cands": tfservingtest.Signature(
			map[string]tfservingtest.Spec{"user": {DType: dtInt64, Shape: []int64{-1}}, "cands": {DType: dtString, Shape: []int64{-1, 20}}},
			map[string]tfservingtest.Spec{"scores": {DType: dtFloat}}),
		"no_scores": tfservingtest.Signature(
			map[string]tfservingtest.Spec{"user": {DType: dtInt64}, "cands": {DType: dtString}},
			map[string]tfservingtest.Spec{"probabilities": {DType: dtFloat}}),
		"int_scores": tfservingtest.Signature(
			map[string]tfservingtest.Spec{"user": {DType: dtInt64}, "cands": {DType: dtString}},
			map[string]tfservingtest.Spec{"scores": {DType: dtInt64}}),
	}
	srv := startServer(t, ranker(), other)
	down := startServer(t)
	down.Stop()
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()

	tests := []struct {
		name      string
		edit      func(*tfserving.Config)
		wantField string
		wantMsg   string
	}{
		{name: "ok version", edit: func(*tfserving.Config) {}},
		{name: "ok label", edit: func(c *tfserving.Config) { c.Version, c.VersionLabel = 0, "canary" }},
		{name: "ok latest", edit: func(c *tfserving.Config) { c.Version = 0 }},
		{name: "down target", edit: func(c *tfserving.Config) { c.Target = down.Addr() },
			wantField: "backend.target", wantMsg: "is unreachable"},
		{name: "missing model", edit: func(c *tfserving.Config) { c.ModelName = "nope" },
			wantField: "backend.model_name", wantMsg: `model "nope" is not served`},
		{name: "missing version", edit: func(c *tfserving.Config) { c.Version = 9 },
			wantField: "backend.version", wantMsg: "version 9 of model \"ranker\" is not served"},
		{name: "version not available", edit: func(c *tfserving.Config) { c.Version = 4 },
			wantField: "backend.version", wantMsg: "version 4 is not AVAILABLE (state LOADING)"},
		{name: "unknown label", edit: func(c *tfserving.Config) { c.Version, c.VersionLabel = 0, "nolabel" },
			wantField: "backend.version_label", wantMsg: `version label "nolabel" of model "ranker" does not resolve`},
		{name: "label of a version not available", edit: func(c *tfserving.Config) { c.Version, c.VersionLabel = 0, "next" },
			wantField: "backend.version_label", wantMsg: `version label "next"`},
		{name: "missing signature", edit: func(c *tfserving.Config) { c.SignatureName = "predict" },
			wantField: "backend.signature_name", wantMsg: `no signature "predict"`},
		{name: "signature lacks an input", edit: func(c *tfserving.Config) { c.ModelName, c.SignatureName = "other", "no_user" },
			wantField: "features.inputs.user", wantMsg: `signature "no_user" has no input "user"`},
		{name: "wrong dtype", edit: func(c *tfserving.Config) { c.ModelName, c.SignatureName = "other", "int32_user" },
			wantField: "features.inputs.user", wantMsg: `input "user" is int64 (DT_INT64) but signature "int32_user" wants DT_INT32`},
		{name: "wrong rank", edit: func(c *tfserving.Config) { c.ModelName, c.SignatureName = "other", "scalar_cands" },
			wantField: "features.inputs.cands", wantMsg: "builds a list"},
		{name: "fixed length", edit: func(c *tfserving.Config) { c.ModelName, c.SignatureName = "other", "fixed_cands" },
			wantField: "features.inputs.cands", wantMsg: `give the input "length": 20`},
		{name: "missing scores output", edit: func(c *tfserving.Config) { c.ModelName, c.SignatureName = "other", "no_scores" },
			wantField: "backend.outputs.scores", wantMsg: `has no output "scores" (its outputs: "probabilities")`},
		{name: "scores of the wrong dtype", edit: func(c *tfserving.Config) { c.ModelName, c.SignatureName = "other", "int_scores" },
			wantField: "backend.outputs.scores", wantMsg: "is DT_INT64, want DT_FLOAT or DT_DOUBLE"},
		{name: "missing ids output", edit: func(c *tfserving.Config) { c.Outputs.IDs = "ids" },
			wantField: "backend.outputs.ids", wantMsg: `has no output "ids"`},
		{name: "no target", edit: func(c *tfserving.Config) { c.Target = "" }, wantField: "backend.target", wantMsg: "required"},
		{name: "version and label", edit: func(c *tfserving.Config) { c.VersionLabel = "canary" },
			wantField: "backend.version_label", wantMsg: "not both"},
		{name: "no scores alias", edit: func(c *tfserving.Config) { c.Outputs.Scores = "" },
			wantField: "backend.outputs.scores", wantMsg: "required"},
		{name: "missing CA file", edit: func(c *tfserving.Config) { c.TLS = &tfserving.TLS{CAFile: "/nonexistent/ca.pem"} },
			wantField: "backend.tls.ca_file", wantMsg: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rankerConfig(srv.Addr(), p)
			tc.edit(&cfg)
			start := time.Now()
			m, err := pool.Open(context.Background(), cfg, true)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer m.Close()
				if !m.Healthy() {
					t.Error("not healthy after validation")
				}
				return
			}
			if err == nil {
				m.Close()
				t.Fatalf("Open succeeded, want an error on %s", tc.wantField)
			}
			var ve *tfserving.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
			}
			if ve.Field != tc.wantField || !strings.Contains(ve.Msg, tc.wantMsg) {
				t.Errorf("error = %v\nwant field %s, message containing %q", err, tc.wantField, tc.wantMsg)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("validation took %s", d)
			}
		})
	}
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func BenchmarkPredict(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("candidates=%d", n), func(b *testing.B) {
			srv := startServer(b, ranker())
			p := plan(b, rankerSpec)
			pool := tfserving.NewPool()
			defer pool.Close()
			m := open(b, pool, rankerConfig(srv.Addr(), p), true)
			cands := make([]string, n)
			for i := range cands {
				cands[i] = fmt.Sprintf("item-%05d", i)
			}
			req := request(b, p, "u", cands, 10)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.Predict(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestEmptyCandidatesSpareTheCall(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	m := open(t, pool, rankerConfig(srv.Addr(), p), true)
	items, err := m.Predict(context.Background(), request(t, p, "u", []string{}, 3))
	if err != nil || len(items) != 0 || items == nil {
		t.Fatalf("Predict with no candidates = %v, %v; want [], nil", items, err)
	}
	if n := srv.Calls("Predict"); n != 0 {
		t.Errorf("%d Predict calls for an empty candidate list", n)
	}
}
