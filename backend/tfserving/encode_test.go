package tfserving

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// referenceRequest is the reference the encoder is held to: the
// apis.PredictRequest Predict built before it encoded requests itself, for
// gRPC's proto codec to marshal, with the same errors.
func referenceRequest(m *Model, req *backend.Request) (*apis.PredictRequest, error) {
	n := len(req.Inputs)
	var ndims, nraw, nstr, strBytes int
	for i := range req.Inputs {
		t := &req.Inputs[i]
		ndims += len(t.Shape)
		switch t.DType {
		case featurizer.Float32, featurizer.Int32:
			nraw += 4 * t.Len()
		case featurizer.Float64, featurizer.Int64:
			nraw += 8 * t.Len()
		case featurizer.String:
			nstr += len(t.String)
			for _, s := range t.String {
				strBytes += len(s)
			}
		case featurizer.Bool:
		default:
			return nil, badInput("input %q has invalid dtype %s", t.Name, t.DType)
		}
	}
	tensors := make([]framework.TensorProto, n)
	shapes := make([]framework.TensorShapeProto, n)
	dims := make([]framework.TensorShapeProto_Dim, ndims)
	dimPtrs := make([]*framework.TensorShapeProto_Dim, ndims)
	raw := make([]byte, 0, nraw)
	var strs [][]byte
	var strBuf []byte
	if nstr > 0 {
		strs = make([][]byte, 0, nstr)
		strBuf = make([]byte, 0, strBytes)
	}
	inputs := make(map[string]*framework.TensorProto, n)
	for i := range req.Inputs {
		t := &req.Inputs[i]
		size := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return nil, badInput("input %q has shape %v", t.Name, t.Shape)
			}
			size *= d
		}
		if size != int64(t.Len()) {
			return nil, badInput("input %q has shape %v but %d values", t.Name, t.Shape, t.Len())
		}
		for j, d := range t.Shape {
			dims[j].Size = d
			dimPtrs[j] = &dims[j]
		}
		shapes[i].Dim = dimPtrs[:len(t.Shape):len(t.Shape)]
		dims, dimPtrs = dims[len(t.Shape):], dimPtrs[len(t.Shape):]

		tp := &tensors[i]
		tp.Dtype = dataType(t.DType)
		tp.TensorShape = &shapes[i]
		start := len(raw)
		switch t.DType {
		case featurizer.Float32:
			for _, v := range t.Float32 {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
			}
		case featurizer.Float64:
			for _, v := range t.Float64 {
				raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(v))
			}
		case featurizer.Int32:
			for _, v := range t.Int32 {
				raw = binary.LittleEndian.AppendUint32(raw, uint32(v))
			}
		case featurizer.Int64:
			for _, v := range t.Int64 {
				raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
			}
		case featurizer.String:
			first := len(strs)
			for _, s := range t.String {
				k := len(strBuf)
				strBuf = append(strBuf, s...)
				strs = append(strs, strBuf[k:len(strBuf):len(strBuf)])
			}
			tp.StringVal = strs[first:len(strs):len(strs)]
		case featurizer.Bool:
			tp.BoolVal = t.Bool // read only by the marshaller
		}
		if len(raw) > start {
			tp.TensorContent = raw[start:len(raw):len(raw)]
		}
		inputs[t.Name] = tp
	}
	filter := []string{m.cfg.Outputs.Scores}
	if m.cfg.Outputs.IDs != "" {
		filter = append(filter, m.cfg.Outputs.IDs)
	}
	return &apis.PredictRequest{ModelSpec: m.modelSpec(true), Inputs: inputs, OutputFilter: filter}, nil
}

// encodeRequest is what the codec sends for req: the bytes of m's
// Predict request, or the error of the request or of its encoding.
func encodeRequest(m *Model, req *backend.Request) ([]byte, error) {
	return encode(m, func() (*predictRequest, error) { return m.request(req) })
}

// encode is what the codec sends for the request build returns.
func encode(m *Model, build func() (*predictRequest, error)) ([]byte, error) {
	r, err := build()
	if err != nil {
		return nil, err
	}
	data, err := m.codec.Marshal(r)
	if err != nil {
		return nil, err
	}
	defer data.Free()
	return data.Materialize(), nil
}

// checkRequest checks that m encodes req as referenceRequest builds it: the
// same error, or bytes proto.Unmarshal reads as the same message. With
// inputs sorted by name, the bytes are those of a deterministic
// proto.Marshal.
func checkRequest(t *testing.T, m *Model, req *backend.Request) {
	t.Helper()
	checkEncoding(t, m, req, func() (*predictRequest, error) { return m.request(req) })
}

// checkEncoding checks that the request build returns encodes as
// referenceRequest builds req.
func checkEncoding(t *testing.T, m *Model, req *backend.Request, build func() (*predictRequest, error)) {
	t.Helper()
	want, wantErr := referenceRequest(m, req)
	var wantWire []byte
	if wantErr == nil {
		// gRPC's proto codec refuses what proto.Marshal refuses.
		wantWire, wantErr = proto.MarshalOptions{Deterministic: true}.Marshal(want)
	}
	got, err := encode(m, build)
	switch {
	case wantErr != nil && err == nil:
		t.Fatalf("encoded %x, want the error %v", got, wantErr)
	case wantErr != nil:
		// The request's own errors are the same; the encoding's, in
		// gRPC's words, are INTERNAL either way.
		if _, refused := wantErr.(*backend.InputError); refused && err.Error() != wantErr.Error() {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		return
	case err != nil:
		t.Fatalf("error %v, want %v", err, want)
	}
	var dec apis.PredictRequest
	if err := proto.Unmarshal(got, &dec); err != nil {
		t.Fatalf("proto.Unmarshal of the encoding: %v", err)
	}
	if !proto.Equal(&dec, want) {
		t.Fatalf("encoded %v\nwant    %v", &dec, want)
	}
	sorted := slices.IsSortedFunc(req.Inputs, func(a, b featurizer.Tensor) int { return strings.Compare(a.Name, b.Name) })
	unique := len(want.GetInputs()) == len(req.Inputs)
	if sorted && unique && !bytes.Equal(got, wantWire) {
		t.Fatalf("encoded %x\nwant    %x (deterministic proto.Marshal)", got, wantWire)
	}
}

// checkBatchRequest checks that m encodes the batch of reqs as
// referenceRequest builds their inputs stacked by backend.Stack, refuses
// it with the first request's error as the request alone, or, when they do
// not stack, with backend.ErrNotStackable.
func checkBatchRequest(t *testing.T, m *Model, reqs []*backend.Request) {
	t.Helper()
	for _, req := range reqs {
		if _, wantErr := m.request(req); wantErr != nil {
			if _, err := m.batchRequest(reqs); err == nil || err.Error() != wantErr.Error() {
				t.Fatalf("batch error %v, want %v", err, wantErr)
			}
			return
		}
	}
	if backend.CheckStack(reqs) != nil {
		if _, err := m.batchRequest(reqs); !errors.Is(err, backend.ErrNotStackable) {
			t.Fatalf("batch error %v, want ErrNotStackable", err)
		}
		return
	}
	// backend.Stack is the reference of stacking: the values concatenated,
	// the leading dimension len(reqs).
	stacked := &backend.Request{Inputs: backend.Stack(reqs), K: 1}
	checkEncoding(t, m, stacked, func() (*predictRequest, error) { return m.batchRequest(reqs) })
}

// reversed returns the inputs with each tensor's values in reverse order:
// another request of the same shapes.
func reversed(inputs []featurizer.Tensor) []featurizer.Tensor {
	out := slices.Clone(inputs)
	for i := range out {
		t := &out[i]
		t.Float32, t.Float64, t.Int32, t.Int64 = slices.Clone(t.Float32), slices.Clone(t.Float64), slices.Clone(t.Int32), slices.Clone(t.Int64)
		t.String, t.Bool = slices.Clone(t.String), slices.Clone(t.Bool)
		slices.Reverse(t.Float32)
		slices.Reverse(t.Float64)
		slices.Reverse(t.Int32)
		slices.Reverse(t.Int64)
		slices.Reverse(t.String)
		slices.Reverse(t.Bool)
	}
	return out
}

// requestModels are models with each kind of model spec and output filter.
func requestModels() map[string]*Model {
	models := map[string]*Model{}
	for name, cfg := range map[string]Config{
		"version":     {ModelName: "ranker", Version: 7, SignatureName: DefaultSignature, Outputs: Outputs{Scores: "scores"}},
		"label":       {ModelName: "ranker", VersionLabel: "canary", SignatureName: "rank", Outputs: Outputs{Scores: "s", IDs: "ids"}},
		"latest":      {ModelName: "ranker", SignatureName: DefaultSignature, Outputs: Outputs{Scores: "scores"}},
		"big version": {ModelName: "r", Version: 1 << 40, SignatureName: "x", Outputs: Outputs{Scores: "y", IDs: "z"}},
	} {
		models[name] = newModel(cfg, nil, func() {})
	}
	return models
}

func TestEncodeRequest(t *testing.T) {
	const (
		f32 = featurizer.Float32
		f64 = featurizer.Float64
		i32 = featurizer.Int32
		i64 = featurizer.Int64
		str = featurizer.String
		boo = featurizer.Bool
	)
	tests := []struct {
		name   string
		inputs []featurizer.Tensor
		want   string // a part of the request's error; "" for none
	}{
		{name: "no inputs"},
		{name: "every dtype", inputs: []featurizer.Tensor{
			{Name: "b", DType: boo, Shape: []int64{1, 3}, Bool: []bool{true, false, true}},
			{Name: "f32", DType: f32, Shape: []int64{1}, Float32: []float32{1.5}},
			{Name: "f64", DType: f64, Shape: []int64{1, 2}, Float64: []float64{0.25, -1e300}},
			{Name: "i32", DType: i32, Shape: []int64{1}, Int32: []int32{-7}},
			{Name: "i64", DType: i64, Shape: []int64{1, 3}, Int64: []int64{1, -2, math.MinInt64}},
			{Name: "s", DType: str, Shape: []int64{1}, String: []string{"music"}},
		}},
		{name: "multi-dim shapes", inputs: []featurizer.Tensor{
			{Name: "cube", DType: f32, Shape: []int64{1, 2, 3}, Float32: []float32{1, 2, 3, 4, 5, 6}},
			{Name: "grid", DType: i64, Shape: []int64{2, 2}, Int64: []int64{math.MaxInt64, 0, -1, 1 << 40}},
			{Name: "words", DType: str, Shape: []int64{1, 2, 2}, String: []string{"a", "bb", "ccc", "dddd"}},
		}},
		{name: "scalar shape", inputs: []featurizer.Tensor{{Name: "x", DType: f64, Shape: []int64{}, Float64: []float64{3}}}},
		{name: "nil shape", inputs: []featurizer.Tensor{{Name: "x", DType: boo, Bool: []bool{false}}}},
		{name: "empty strings", inputs: []featurizer.Tensor{{Name: "s", DType: str, Shape: []int64{1, 4}, String: []string{"", "x", "", ""}}}},
		{name: "bytes that are not UTF-8 in a string tensor", inputs: []featurizer.Tensor{{Name: "s", DType: str, Shape: []int64{2}, String: []string{"\xff", "ç"}}}},
		{name: "zero-length tensors", inputs: []featurizer.Tensor{
			{Name: "a", DType: f32, Shape: []int64{1, 0}, Float32: []float32{}},
			{Name: "b", DType: f64, Shape: []int64{1, 0}},
			{Name: "c", DType: i32, Shape: []int64{0}},
			{Name: "d", DType: i64, Shape: []int64{1, 0, 5}},
			{Name: "e", DType: str, Shape: []int64{1, 0}, String: []string{}},
			{Name: "f", DType: boo, Shape: []int64{0, 0}},
		}},
		{name: "special floats", inputs: []featurizer.Tensor{
			{Name: "f", DType: f32, Shape: []int64{1, 4}, Float32: []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32}},
			{Name: "g", DType: f64, Shape: []int64{1, 2}, Float64: []float64{math.Inf(-1), math.MaxFloat64}},
		}},
		{name: "long values", inputs: []featurizer.Tensor{
			{Name: strings.Repeat("n", 200), DType: str, Shape: []int64{1, 2}, String: []string{strings.Repeat("v", 300), strings.Repeat("w", 20000)}},
			{Name: "z", DType: f32, Shape: []int64{1, 5000}, Float32: make([]float32, 5000)},
		}},
		{name: "unsorted names", inputs: []featurizer.Tensor{
			{Name: "z", DType: i32, Shape: []int64{1}, Int32: []int32{1}},
			{Name: "a", DType: i32, Shape: []int64{1}, Int32: []int32{2}},
			{Name: "", DType: i32, Shape: []int64{1}, Int32: []int32{3}},
		}},
		{name: "a repeated name: the last wins", inputs: []featurizer.Tensor{
			{Name: "x", DType: i32, Shape: []int64{1}, Int32: []int32{1}},
			{Name: "x", DType: str, Shape: []int64{1}, String: []string{"two"}},
		}},
		{name: "invalid dtype", want: `input "bad" has invalid dtype dtype(9)`, inputs: []featurizer.Tensor{
			{Name: "x", DType: i32, Shape: []int64{1}, Int32: []int32{1}},
			{Name: "bad", DType: 9, Shape: []int64{1}},
		}},
		{name: "zero dtype", want: `input "zero" has invalid dtype dtype(0)`, inputs: []featurizer.Tensor{{Name: "zero", Shape: []int64{0}}}},
		{name: "negative dim", want: `input "x" has shape [1 -1]`, inputs: []featurizer.Tensor{{Name: "x", DType: f32, Shape: []int64{1, -1}}}},
		{name: "too few values", want: `input "x" has shape [1 3] but 2 values`, inputs: []featurizer.Tensor{{Name: "x", DType: str, Shape: []int64{1, 3}, String: []string{"a", "b"}}}},
		{name: "values of another dtype", want: `input "x" has shape [1] but 0 values`, inputs: []featurizer.Tensor{{Name: "x", DType: f64, Shape: []int64{1}, Float32: []float32{1}}}},
		{name: "a dtype error comes before an earlier shape error", want: `input "y" has invalid dtype`, inputs: []featurizer.Tensor{
			{Name: "x", DType: f32, Shape: []int64{2}},
			{Name: "y", DType: 200},
		}},
		{name: "invalid UTF-8 name", want: "UTF-8", inputs: []featurizer.Tensor{{Name: "a\xffb", DType: boo, Shape: []int64{1}, Bool: []bool{true}}}},
	}
	for mname, m := range requestModels() {
		for _, tc := range tests {
			t.Run(mname+"/"+tc.name, func(t *testing.T) {
				req := &backend.Request{Inputs: tc.inputs, K: 1}
				_, err := encodeRequest(m, req)
				if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				checkRequest(t, m, req)
				other := &backend.Request{Inputs: reversed(tc.inputs), K: 1}
				checkBatchRequest(t, m, []*backend.Request{req, other, req})
				checkBatchRequest(t, m, []*backend.Request{req})
			})
		}
	}
}

// FuzzEncodeRequest checks the encoding of any input tensors against the
// reference, as TestEncodeRequest does for its table.
func FuzzEncodeRequest(f *testing.F) {
	f.Add([]byte{3, 1, 2, 'a', 'b', 2, 1, 3, 0, 0, 128, 63, 5, 1, 's', 1, 2, 2, 'h', 'i', 0})
	f.Add([]byte{2, 6, 1, 'b', 2, 1, 2, 1, 0, 4, 0, 1, 0xff, 0})
	f.Add([]byte{1, 4, 0, 3, 1, 2, 3})
	models := requestModels()
	m := models["label"]
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &backend.Request{Inputs: fuzzTensors(data), K: 1}
		checkRequest(t, m, req)
		checkBatchRequest(t, m, []*backend.Request{req, {Inputs: reversed(req.Inputs), K: 1}})
	})
}

// fuzzTensors reads input tensors out of data: a count, then for each a
// dtype (7 for an invalid one), a name, a shape, and values, as many as the
// shape holds or one fewer.
func fuzzTensors(data []byte) []featurizer.Tensor {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	take := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return b
	}
	var ts []featurizer.Tensor
	for range next() % 5 {
		t := featurizer.Tensor{DType: featurizer.DType(next() % 8)}
		t.Name = string(take(int(next() % 8)))
		size := 1
		for range next() % 4 {
			d := int64(next()%5) - int64(next()%2) // some -1
			t.Shape = append(t.Shape, d)
			size *= int(max(d, 0))
		}
		if size > 0 && next()%8 == 0 {
			size-- // a shape the values do not fill
		}
		for range size {
			v := take(8)
			v = append(v, make([]byte, 8-len(v))...)
			x := binary.LittleEndian.Uint64(v)
			switch t.DType {
			case featurizer.Float32:
				t.Float32 = append(t.Float32, math.Float32frombits(uint32(x)))
			case featurizer.Float64:
				t.Float64 = append(t.Float64, math.Float64frombits(x))
			case featurizer.Int32:
				t.Int32 = append(t.Int32, int32(x))
			case featurizer.Int64:
				t.Int64 = append(t.Int64, int64(x))
			case featurizer.String:
				t.String = append(t.String, string(v[:x%9]))
			case featurizer.Bool:
				t.Bool = append(t.Bool, x%2 == 1)
			}
		}
		ts = append(ts, t)
	}
	return ts
}

// What Predict sends is what TF Serving receives: the fake decodes it, as
// TF Serving would, into the reference request.
func TestPredictSendsTheReferenceRequest(t *testing.T) {
	p, err := featurizer.Parse([]byte(`{"inputs": {
	  "f32":   {"from": "features.f32", "dtype": "float32"},
	  "f64":   {"from": "features.f64", "transform": "list", "length": 3, "dtype": "float64"},
	  "i32":   {"from": "features.i32", "dtype": "int32"},
	  "i64":   {"from": "features.i64", "transform": "list", "dtype": "int64"},
	  "s":     {"from": "context.surface", "dtype": "string"},
	  "b":     {"from": "features.b", "dtype": "bool"},
	  "cands": {"from": "candidates", "transform": "list", "dtype": "string", "default": []}}}`))
	if err != nil {
		t.Fatal(err)
	}
	dt := func(d featurizer.DType) tfservingtest.Spec { return tfservingtest.Spec{DType: dataType(d)} }
	srv, err := tfservingtest.Start(&tfservingtest.Model{
		Name:     "wire",
		Versions: map[int64]tfservingtest.State{5: tfservingtest.StateAvailable},
		Signatures: map[string]*tfpb.SignatureDef{DefaultSignature: tfservingtest.Signature(map[string]tfservingtest.Spec{
			"f32": dt(featurizer.Float32), "f64": dt(featurizer.Float64), "i32": dt(featurizer.Int32), "i64": dt(featurizer.Int64),
			"s": dt(featurizer.String), "b": dt(featurizer.Bool), "cands": dt(featurizer.String),
		}, map[string]tfservingtest.Spec{"scores": {DType: framework.DataType_DT_FLOAT}})},
		CandidatesInput: "cands",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	var pool Pool
	defer pool.Close()
	m, err := pool.Open(context.Background(), Config{Target: srv.Addr(), ModelName: "wire", Version: 5,
		Outputs: Outputs{Scores: "scores"}, Inputs: p.Inputs()}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, fr := range []*featurizer.Request{
		{Context: map[string]string{"surface": "music"}, Candidates: []string{"a", "", "ç"},
			Features: map[string]any{"f32": 1.5, "f64": []any{0.25, -1.0}, "i32": -7.0, "i64": []any{1.0, -2.0, float64(int64(1) << 40)}, "b": true}},
		{Context: map[string]string{"surface": "ß"}, Candidates: []string{"x"},
			Features: map[string]any{"f32": math.Copysign(0, -1), "f64": []any{}, "i32": 0.0, "i64": []any{}, "b": false}},
		{Context: map[string]string{"surface": ""}, Candidates: make([]string, 3000),
			Features: map[string]any{"f32": 0.0, "f64": []any{1.0, 2.0, 3.0}, "i32": 1.0, "i64": []any{5.0}, "b": true}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			in, err := p.Build(fr)
			if err != nil {
				t.Fatal(err)
			}
			req := &backend.Request{Inputs: in, Candidates: fr.Candidates, K: 2}
			if _, err := m.Predict(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			want, err := referenceRequest(m, req)
			if err != nil {
				t.Fatal(err)
			}
			if got := srv.LastRequest(); !proto.Equal(got, want) {
				t.Errorf("TF Serving got %v\nwant %v", got, want)
			}
		})
	}
}

// A request buffer is big enough for gRPC to give it back to the pool
// (mem.NewBuffer pools none of 1 KiB or less), and none larger than
// maxPooledBuffer is kept.
func TestBufferPool(t *testing.T) {
	var p bufferPool
	for _, n := range []int{0, 1, 1 << 10, minRequestBuffer + 1, maxPooledBuffer, maxPooledBuffer + 1} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) <= 1<<10 {
			t.Errorf("Get(%d): len %d, cap %d; want len %d, cap over 1 KiB", n, len(*b), cap(*b), n)
		}
	}
	big := p.Get(maxPooledBuffer + 1)
	p.Put(big)
	if b := p.Get(10); cap(*b) > maxPooledBuffer {
		t.Errorf("Get(10) returned the %d-byte buffer put back", cap(*b))
	}
}
