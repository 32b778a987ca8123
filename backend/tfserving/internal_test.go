package tfserving

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

func TestPoolSharesConnections(t *testing.T) {
	newServer := func() *tfservingtest.Server {
		s, err := tfservingtest.Start(&tfservingtest.Model{
			Name:     "m",
			Versions: map[int64]tfservingtest.State{1: tfservingtest.StateAvailable, 2: tfservingtest.StateAvailable},
			Signatures: map[string]*tfpb.SignatureDef{"serving_default": tfservingtest.Signature(nil,
				map[string]tfservingtest.Spec{"scores": {DType: framework.DataType_DT_FLOAT}})},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	a, b := newServer(), newServer()
	var pool Pool // the zero value is usable
	defer pool.Close()
	openModel := func(target string, version int64, tls *TLS) *Model {
		m, err := pool.Open(context.Background(), Config{Target: target, ModelName: "m", Version: version,
			Outputs: Outputs{Scores: "scores"}, TLS: tls}, false)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	conns := func() int {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return len(pool.conns)
	}
	a1, a2 := openModel(a.Addr(), 1, nil), openModel(a.Addr(), 2, nil)
	if a1.pred == nil || conns() != 1 {
		t.Fatalf("two versions on one target: %d connections, want 1", conns())
	}
	b1 := openModel(b.Addr(), 1, nil)
	if conns() != 2 {
		t.Fatalf("a second target: %d connections, want 2", conns())
	}
	a1.Close()
	a1.Close() // twice is harmless
	if conns() != 2 {
		t.Fatalf("after closing one of two users: %d connections, want 2", conns())
	}
	a2.Close()
	b1.Close()
	if conns() != 0 {
		t.Fatalf("after closing every model: %d connections, want 0", conns())
	}
	pool.Close()
	if _, err := pool.Open(context.Background(), Config{Target: a.Addr(), ModelName: "m", Outputs: Outputs{Scores: "scores"}}, false); err == nil {
		t.Error("Open after Close succeeded")
	}
}

func TestReadOutputs(t *testing.T) {
	shape := func(dims ...int64) *framework.TensorShapeProto {
		s := &framework.TensorShapeProto{}
		for _, d := range dims {
			s.Dim = append(s.Dim, &framework.TensorShapeProto_Dim{Size: d})
		}
		return s
	}
	f32 := func(vs ...float32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	f64 := func(vs ...float64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	tests := []struct {
		name    string
		t       *framework.TensorProto
		n       int
		want    []float64
		wantErr bool
		rows    int // of n scores each
	}{
		{"float_val [1,3]", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(1, 3), FloatVal: []float32{1, 2, 3}}, 3, []float64{1, 2, 3}, false, 1},
		{"short float_val repeats the last", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(3), FloatVal: []float32{1, 2}}, 3, []float64{1, 2, 2}, false, 1},
		{"tensor_content", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2), TensorContent: f32(0.5, -1)}, 2, []float64{0.5, -1}, false, 1},
		{"empty", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(1, 0)}, 0, nil, false, 1},
		{"no values", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2)}, 2, nil, true, 1},
		{"too many values", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2), FloatVal: []float32{1, 2, 3}}, 2, nil, true, 1},
		{"short tensor_content", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2), TensorContent: f32(1)}, 2, nil, true, 1},
		{"count differs from candidates", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(1, 2), FloatVal: []float32{1, 2}}, 3, nil, true, 1},
		{"batch of 2", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2, 2), FloatVal: []float32{1, 2, 3, 4}}, 2, nil, true, 1},
		{"rank 3", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(1, 2, 1), FloatVal: []float32{1, 2}}, 2, nil, true, 1},
		{"int64", &framework.TensorProto{Dtype: framework.DataType_DT_INT64, TensorShape: shape(2), Int64Val: []int64{1, 2}}, 2, nil, true, 1},
		{"rows of a batch", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2, 3), FloatVal: []float32{1, 2, 3, 4, 5, 6}}, 3, []float64{1, 2, 3, 4, 5, 6}, false, 2},
		{"a batch's short float_val repeats the last", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2, 2), FloatVal: []float32{1, 2, 3}}, 2, []float64{1, 2, 3, 3}, false, 2},
		{"a batch's tensor_content", &framework.TensorProto{Dtype: framework.DataType_DT_DOUBLE, TensorShape: shape(3, 1), TensorContent: f64(0.5, -1, 4)}, 1, []float64{0.5, -1, 4}, false, 3},
		{"a batch of empty rows", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(2, 0)}, 0, nil, false, 2},
		{"a batch of other rows", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(3, 2), FloatVal: []float32{1, 2, 3, 4, 5, 6}}, 2, nil, true, 2},
		{"a batch without its rows", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(4), FloatVal: []float32{1, 2, 3, 4}}, 2, nil, true, 2},
		{"a batch [1, N]", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(1, 4), FloatVal: []float32{1, 2, 3, 4}}, 2, nil, true, 2},
		{"a batch of more than MaxOutputRows", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(4, MaxOutputRows/2), FloatVal: []float32{1}}, MaxOutputRows / 2, nil, true, 4},
		{"one row of more than MaxOutputRows", &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape(1, MaxOutputRows+1), FloatVal: []float32{1}}, MaxOutputRows + 1, nil, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tensorOf(tc.t)
			s, err := readScores(&in, "scores", tc.rows, tc.n)
			if tc.wantErr {
				if !errors.Is(err, backend.ErrBadOutput) {
					t.Fatalf("err = %v, want bad output", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []float64
			for r := range tc.rows {
				row := s.row(r)
				for i := range row.Len() {
					got = append(got, row.At(i))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("scores %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeStringList(t *testing.T) {
	enc := []byte{1, 0, 3, 'a', 'x', 'y', 'z'}
	got, ok := decodeStringList(enc, 3)
	if !ok || len(got) != 3 || string(got[0]) != "a" || string(got[1]) != "" || string(got[2]) != "xyz" {
		t.Fatalf("decodeStringList = %q, %v", got, ok)
	}
	for _, bad := range [][]byte{{1, 0, 3, 'a', 'x'}, {1, 0, 3, 'a', 'x', 'y', 'z', 'w'}, {0x80}} {
		if _, ok := decodeStringList(bad, 3); ok {
			t.Errorf("decodeStringList(%v) succeeded", bad)
		}
	}
	// A shape from a sick server, far beyond what the bytes can hold, is
	// refused before it sizes an allocation.
	if _, ok := decodeStringList(enc, 1<<60); ok {
		t.Error("decodeStringList(enc, 1<<60) succeeded")
	}
}

func TestNonFiniteScoreIsBadOutput(t *testing.T) {
	tests := []struct {
		name    string
		scores  []float32
		exclude string
	}{
		{name: "NaN", scores: []float32{1, float32(math.NaN())}},
		{name: "+Inf", scores: []float32{float32(math.Inf(1)), 0.5}},
		{name: "-Inf", scores: []float32{0.5, float32(math.Inf(-1))}},
		{name: "Inf of an excluded item", scores: []float32{0.5, float32(math.Inf(1))}, exclude: "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := &apis.PredictResponse{Outputs: map[string]*framework.TensorProto{"scores": {
				Dtype: framework.DataType_DT_FLOAT, TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: 2}}},
				FloatVal: tc.scores}}}
			m := &Model{cfg: Config{Outputs: Outputs{Scores: "scores"}}}
			req := &backend.Request{Candidates: []string{"a", "b"}, K: 2}
			if tc.exclude != "" {
				req.Exclude = map[string]struct{}{tc.exclude: {}}
			}
			items, err := itemsOf(m, &predictResponse{out: outputsOf(resp, "scores", "")}, req)
			if !errors.Is(err, backend.ErrBadOutput) || backend.Classify(err) != backend.ClassBadOutput {
				t.Fatalf("items = %v, err = %v, want bad output", items, err)
			}
		})
	}
}

// BenchmarkEncodeRequest measures what a request costs before gRPC sends
// it: checking the input tensors and encoding them, with the model spec and
// output filter, into the buffer the codec hands gRPC (freed as gRPC frees
// it).
func BenchmarkEncodeRequest(b *testing.B) {
	p, err := featurizer.Parse([]byte(`{"inputs": {
	  "user":  {"from": "user_id", "transform": "hash_bucket", "buckets": 1000, "dtype": "int64"},
	  "age":   {"from": "features.age", "dtype": "float32"},
	  "recent": {"from": "features.recent", "transform": "hash_bucket", "buckets": 1000, "length": 20, "dtype": "int64"},
	  "cands": {"from": "candidates", "transform": "list", "dtype": "string"}}}`))
	if err != nil {
		b.Fatal(err)
	}
	cands := make([]string, 100)
	for i := range cands {
		cands[i] = "item-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	in, err := p.Build(&featurizer.Request{UserID: "u1", Features: map[string]any{"age": 31.0, "recent": []any{"a", "b"}}, Candidates: cands})
	if err != nil {
		b.Fatal(err)
	}
	m := newModel(Config{ModelName: "m", SignatureName: DefaultSignature, Outputs: Outputs{Scores: "scores"}}, nil, func() {})
	req := &backend.Request{Inputs: in, Candidates: cands, K: 10}
	b.ReportAllocs()
	for b.Loop() {
		r, err := m.request(req)
		if err != nil {
			b.Fatal(err)
		}
		data, err := m.codec.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		data.Free()
	}
}

func BenchmarkRank(b *testing.B) {
	cands := make([]string, 1000)
	scores := make([]float32, len(cands))
	for i := range cands {
		cands[i] = "item-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		scores[i] = float32(tfservingtest.DefaultScore(1, cands[i]))
	}
	req := &backend.Request{Candidates: cands, K: 10}
	b.ReportAllocs()
	for b.Loop() {
		s := scoreVec{f32: scores, n: len(scores)}
		if _, err := rankItems(backend.IDs{Strings: cands}, &s, req, false); err != nil {
			b.Fatal(err)
		}
	}
}

// itemsOf is what Predict makes of a response to one request.
func itemsOf(m *Model, resp *predictResponse, req *backend.Request) ([]backend.Item, error) {
	lists := make([][]backend.Item, 1)
	if err := m.items(resp, []*backend.Request{req}, lists); err != nil {
		return nil, err
	}
	return lists[0], nil
}
