package tfserving

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// outputsOf is the reference the decoder is held to: the outputs aliased
// scores and ids (none when "") of a response decoded by proto.Unmarshal.
func outputsOf(resp *apis.PredictResponse, scores, ids string) outputs {
	var out outputs
	if t := resp.GetOutputs()[scores]; t != nil {
		out.scores, out.hasScores = tensorOf(t), true
	}
	if t := resp.GetOutputs()[ids]; ids != "" && t != nil {
		out.ids, out.hasIDs = tensorOf(t), true
	}
	return out
}

// tensorOf is the part of t that Predict reads.
func tensorOf(t *framework.TensorProto) tensor {
	var dims []int64
	for _, d := range t.GetTensorShape().GetDim() {
		dims = append(dims, d.GetSize())
	}
	return tensor{dtype: t.GetDtype(), dims: dims, content: t.GetTensorContent(),
		floats: t.GetFloatVal(), doubles: t.GetDoubleVal(), strings: t.GetStringVal()}
}

// tensorDiff describes how got differs from want ("" when it does not),
// comparing floats by their bits so that NaNs compare too.
func tensorDiff(got, want tensor) string {
	var d []string
	if got.dtype != want.dtype {
		d = append(d, fmt.Sprintf("dtype %s, want %s", got.dtype, want.dtype))
	}
	if !slices.Equal(got.dims, want.dims) {
		d = append(d, fmt.Sprintf("dims %v, want %v", got.dims, want.dims))
	}
	if !bytes.Equal(got.content, want.content) {
		d = append(d, fmt.Sprintf("tensor_content %x, want %x", got.content, want.content))
	}
	if !slices.EqualFunc(got.floats, want.floats, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
		d = append(d, fmt.Sprintf("float_val %v, want %v", got.floats, want.floats))
	}
	if !slices.EqualFunc(got.doubles, want.doubles, func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }) {
		d = append(d, fmt.Sprintf("double_val %v, want %v", got.doubles, want.doubles))
	}
	if !slices.EqualFunc(got.strings, want.strings, bytes.Equal) {
		d = append(d, fmt.Sprintf("string_val %q, want %q", got.strings, want.strings))
	}
	return strings.Join(d, "; ")
}

// outputsDiff describes how got differs from want ("" when it does not).
func outputsDiff(got, want outputs) string {
	var d []string
	if got.hasScores != want.hasScores || got.hasIDs != want.hasIDs {
		d = append(d, fmt.Sprintf("has scores, ids = %v, %v, want %v, %v", got.hasScores, got.hasIDs, want.hasScores, want.hasIDs))
	}
	if s := tensorDiff(got.scores, want.scores); s != "" {
		d = append(d, "scores: "+s)
	}
	if s := tensorDiff(got.ids, want.ids); s != "" {
		d = append(d, "ids: "+s)
	}
	return strings.Join(d, "; ")
}

// Hand-made wire encodings, for what proto.Marshal never writes: unpacked
// floats, repeated keys and fields, unknown fields, malformed bytes.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func fBytes(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func fString(num protowire.Number, s string) []byte { return fBytes(num, []byte(s)) }

func fVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func fFixed32(num protowire.Number, v uint32) []byte {
	return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), v)
}

func fFixed64(num protowire.Number, v uint64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), v)
}

// wEntry is an outputs map entry.
func wEntry(key string, tensor []byte) []byte {
	return fBytes(responseOutputs, cat(fString(mapKey, key), fBytes(mapValue, tensor)))
}

// wShape is a tensor_shape field.
func wShape(dims ...int64) []byte {
	var shape []byte
	for _, d := range dims {
		shape = append(shape, fBytes(shapeDim, fVarint(dimSize, uint64(d)))...)
	}
	return fBytes(tensorShape, shape)
}

func wDType(dt framework.DataType) []byte { return fVarint(tensorDType, uint64(dt)) }

// wFloats is a packed float_val field.
func wFloats(vs ...float32) []byte { return fBytes(tensorFloatVal, f32bytes(vs...)) }

// wUnpackedFloats is float_val, one field per value.
func wUnpackedFloats(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = append(b, fFixed32(tensorFloatVal, math.Float32bits(v))...)
	}
	return b
}

func f32bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func f64bytes(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// responseCase is a response to decode for a model reading "scores" and
// ids (none when ""), called with cands and k.
type responseCase struct {
	name  string
	ids   string
	cands []string
	k     int
	wire  []byte
	// want is "" for items, else a part of the error; "malformed" when
	// proto.Unmarshal refuses the bytes.
	want string
}

func responseCases(t testing.TB) []responseCase {
	shape := func(dims ...int64) *framework.TensorShapeProto {
		s := &framework.TensorShapeProto{}
		for _, d := range dims {
			s.Dim = append(s.Dim, &framework.TensorShapeProto_Dim{Size: d})
		}
		return s
	}
	resp := func(outs map[string]*framework.TensorProto) []byte {
		return marshal(t, &apis.PredictResponse{
			ModelSpec: &apis.ModelSpec{Name: "m", VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(3)}, SignatureName: "serving_default"},
			Outputs:   outs,
		})
	}
	dtFloat, dtDouble, dtString := framework.DataType_DT_FLOAT, framework.DataType_DT_DOUBLE, framework.DataType_DT_STRING
	abc := []string{"a", "b", "c"}
	scores := wEntry("scores", cat(wDType(dtFloat), wShape(1, 3), wFloats(0.5, 0.9, 0.1)))
	modelSpec := fBytes(2, marshal(t, &apis.ModelSpec{Name: "m", SignatureName: "serving_default"}))
	return []responseCase{
		{name: "float_val [1, C]", cands: abc, k: 2, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(1, 3), FloatVal: []float32{0.5, 0.9, 0.1}}})},
		{name: "float_val [C], short", cands: abc, k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(3), FloatVal: []float32{0.5, 0.9}}})},
		{name: "double_val", cands: abc, k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtDouble, TensorShape: shape(1, 3), DoubleVal: []float64{0.25, 0.75, 1e-300}}})},
		{name: "tensor_content f32", cands: abc, k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(3), TensorContent: f32bytes(3, 2, 1)}})},
		{name: "tensor_content f64", cands: abc, k: 1, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtDouble, TensorShape: shape(1, 3), TensorContent: f64bytes(-1, 2, 0)}})},
		{name: "tensor_content wins over float_val", cands: abc, k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(3), TensorContent: f32bytes(3, 2, 1), FloatVal: []float32{9}}})},
		{name: "packed floats by hand", cands: abc, k: 3, wire: scores},
		{name: "unpacked floats", cands: abc, k: 3,
			wire: wEntry("scores", cat(wDType(dtFloat), wShape(1, 3), wUnpackedFloats(0.5, 0.9, 0.1)))},
		{name: "packed and unpacked floats, in two runs", cands: abc, k: 3,
			wire: wEntry("scores", cat(wUnpackedFloats(0.5), wDType(dtFloat), wFloats(0.9), wShape(1, 3), wUnpackedFloats(0.1)))},
		{name: "unpacked doubles", cands: abc, k: 3,
			wire: wEntry("scores", cat(wDType(dtDouble), wShape(3), fFixed64(tensorDoubleVal, math.Float64bits(0.5)),
				fBytes(tensorDoubleVal, f64bytes(0.25, 0.125))))},
		{name: "ids as string_val", ids: "ids", k: 2, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(1, 3), FloatVal: []float32{0.5, 0.9, 0.1}},
			"ids":    {Dtype: dtString, TensorShape: shape(1, 3), StringVal: [][]byte{[]byte("x"), []byte(""), []byte("zz")}}})},
		{name: "ids as tensor_content", ids: "ids", k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtDouble, TensorShape: shape(2), DoubleVal: []float64{0.5, 0.9}},
			"ids":    {Dtype: dtString, TensorShape: shape(2), TensorContent: []byte{2, 1, 'i', '1', 'j'}}})},
		{name: "ids within candidates", ids: "ids", cands: []string{"zz", "q"}, k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(3), FloatVal: []float32{0.5, 0.9, 0.1}},
			"ids":    {Dtype: dtString, TensorShape: shape(3), StringVal: [][]byte{[]byte("x"), []byte("y"), []byte("zz")}}})},
		// TensorFlow repeats the last value up to the shape, so a tiny
		// response can claim any number of rows: bounded, not allocated.
		{name: "ids shape past MaxOutputRows", ids: "ids", k: 3, want: "more than the 1048576", wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(1 << 40), FloatVal: []float32{0.5}},
			"ids":    {Dtype: dtString, TensorShape: shape(1 << 40), StringVal: [][]byte{[]byte("x")}}})},
		{name: "ids shape at MaxOutputRows", ids: "ids", k: 2, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(MaxOutputRows), FloatVal: []float32{0.5}},
			"ids":    {Dtype: dtString, TensorShape: shape(MaxOutputRows), StringVal: [][]byte{[]byte("x")}}})},
		{name: "extra outputs", ids: "ids", k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores":  {Dtype: dtFloat, TensorShape: shape(1), FloatVal: []float32{0.5}},
			"ids":     {Dtype: dtString, TensorShape: shape(1), StringVal: [][]byte{[]byte("x")}},
			"logits":  {Dtype: dtFloat, TensorShape: shape(1, 4), FloatVal: []float32{1, 2, 3, 4}, IntVal: []int32{-1}},
			"ids_raw": {Dtype: framework.DataType_DT_INT64, TensorShape: shape(1), Int64Val: []int64{7}}})},
		{name: "extra output when ids are not read", cands: abc, k: 3, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(1, 3), FloatVal: []float32{0.5, 0.9, 0.1}},
			"ids":    {Dtype: dtString, TensorShape: shape(3), StringVal: [][]byte{[]byte("x"), []byte("y"), []byte("zz")}}})},
		{name: "unknown fields everywhere", cands: abc, k: 3, wire: cat(
			fVarint(9, 1), modelSpec, fString(15, "later"),
			fBytes(responseOutputs, cat(fFixed64(7, 1), fString(mapKey, "scores"), fVarint(3, 3),
				fBytes(mapValue, cat(fVarint(99, 1), wDType(dtFloat), fFixed32(1000, 5),
					fBytes(tensorShape, cat(fVarint(3, 1), fBytes(shapeDim, cat(fVarint(dimSize, 3), fString(2, "batch"), fFixed32(4, 0))))),
					wFloats(0.5, 0.9, 0.1), fVarint(7, 12), fBytes(7, []byte{1, 0x80, 1}))))),
			protowire.AppendTag(nil, 20, protowire.StartGroupType), fVarint(1, 1), protowire.AppendTag(nil, 20, protowire.EndGroupType))},
		{name: "a known field of another wire type is unknown", cands: abc, k: 3,
			wire: wEntry("scores", cat(fFixed32(tensorDType, 9), wDType(dtFloat), fVarint(tensorShape, 5), wShape(3), fVarint(tensorFloatVal, 7), wFloats(1, 2, 3)))},
		{name: "the last entry of a key wins", cands: abc, k: 3, wire: cat(
			wEntry("scores", cat(wDType(dtDouble), wShape(7), wFloats(4, 4, 4, 4, 4, 4, 4))), scores)},
		{name: "the last entry of a key wins, wholly", cands: abc, k: 3, wire: cat(
			wEntry("scores", cat(wDType(dtDouble), fBytes(tensorContent, []byte("xyz")))),
			wEntry("scores", cat(wDType(dtFloat), wShape(3), wFloats(1, 2, 3))))},
		{name: "the last entry of a key wins, bad", cands: abc, k: 3, want: `output "scores" has 7 scores for 3 items`, wire: cat(
			scores, wEntry("scores", cat(wDType(dtFloat), wShape(7), wFloats(4, 4, 4, 4, 4, 4, 4))))},
		{name: "value before key", cands: abc, k: 3, wire: fBytes(responseOutputs, cat(
			fBytes(mapValue, cat(wDType(dtFloat), wShape(3), wFloats(1, 2, 3))), fString(mapKey, "scores")))},
		{name: "the last key of an entry wins", cands: abc, k: 3, wire: cat(scores, fBytes(responseOutputs, cat(
			fString(mapKey, "scores"), fBytes(mapValue, cat(wDType(dtFloat), wShape(3), wFloats(7, 7, 7))), fString(mapKey, "other"))))},
		{name: "two values of an entry merge", cands: abc, k: 3, wire: fBytes(responseOutputs, cat(fString(mapKey, "scores"),
			fBytes(mapValue, cat(wDType(dtInt64()), wShape(1), wFloats(0.5))),
			fBytes(mapValue, cat(wDType(dtFloat), wShape(3), wFloats(0.25, 0.125))),
			fBytes(mapValue, fBytes(tensorContent, []byte("abc"))),
			fBytes(mapValue, fBytes(tensorContent, nil))))},
		{name: "two shapes merge", cands: abc, k: 3, wire: wEntry("scores", cat(wDType(dtFloat), wShape(1), wFloats(1, 2, 3), wShape(3)))},
		{name: "a dim's last size wins", cands: abc, k: 3, wire: wEntry("scores", cat(wDType(dtFloat),
			fBytes(tensorShape, fBytes(shapeDim, cat(fVarint(dimSize, 8), fVarint(dimSize, 3)))), wFloats(1, 2, 3)))},
		{name: "empty candidates' scores", cands: []string{}, k: 3, wire: wEntry("scores", cat(wDType(dtFloat), wShape(1, 0)))},
		{name: "missing output", cands: abc, k: 3, want: `no output "scores"`, wire: resp(map[string]*framework.TensorProto{
			"score": {Dtype: dtFloat, TensorShape: shape(1, 3), FloatVal: []float32{0.5, 0.9, 0.1}}})},
		{name: "missing ids", ids: "ids", k: 3, want: `no output "ids"`, wire: scores},
		{name: "entry without a value", cands: abc, k: 3, want: `output "scores" has shape []`, wire: fBytes(responseOutputs, fString(mapKey, "scores"))},
		{name: "empty response", cands: abc, k: 3, want: `no output "scores"`, wire: nil},
		{name: "wrong dtype", cands: abc, k: 3, want: "is DT_INT64, want DT_FLOAT or DT_DOUBLE", wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtInt64(), TensorShape: shape(1, 3), Int64Val: []int64{1, 2, 3}}})},
		{name: "wrong ids dtype", ids: "ids", k: 3, want: `output "ids" is DT_FLOAT, want DT_STRING`, wire: cat(scores, wEntry("ids", cat(wDType(dtFloat), wShape(3))))},
		{name: "dtype past int32, truncated as protobuf does", cands: abc, k: 3,
			wire: wEntry("scores", cat(fVarint(tensorDType, 1<<32|1), wShape(3), wFloats(1, 2, 3)))},
		{name: "wrong shape", cands: abc, k: 3, want: `has shape [3, 1]`, wire: resp(map[string]*framework.TensorProto{
			"scores": {Dtype: dtFloat, TensorShape: shape(3, 1), FloatVal: []float32{0.5, 0.9, 0.1}}})},
		{name: "negative dim", cands: abc, k: 3, want: `has shape [-3]`, wire: wEntry("scores", cat(wDType(dtFloat), wShape(-3), wFloats(1, 2, 3)))},
		{name: "too few scores", cands: abc, k: 3, want: "has 2 scores for 3 items", wire: wEntry("scores", cat(wDType(dtFloat), wShape(2), wFloats(1, 2)))},
		{name: "NaN score", cands: abc, k: 3, want: "is NaN", wire: wEntry("scores", cat(wDType(dtFloat), wShape(3), wFloats(1, float32(math.NaN()), 2)))},
		{name: "truncated", cands: abc, k: 3, want: "malformed", wire: scores[:len(scores)-1]},
		{name: "truncated tag", cands: abc, k: 3, want: "malformed", wire: cat(scores, []byte{0x80})},
		{name: "invalid UTF-8 key", cands: abc, k: 3, want: "malformed", wire: cat(scores, wEntry("\xff", nil))},
		{name: "invalid UTF-8 key, unread", ids: "ids", cands: abc, k: 3, want: "malformed",
			wire: cat(scores, fBytes(responseOutputs, cat(fString(mapKey, "ok\xc0"), fString(mapKey, "ids"))))},
		{name: "invalid UTF-8 model name", cands: abc, k: 3, want: "malformed", wire: cat(fBytes(2, fString(1, "m\xff")), scores)},
		{name: "invalid UTF-8 dim name", cands: abc, k: 3, want: "malformed",
			wire: wEntry("scores", cat(wDType(dtFloat), fBytes(tensorShape, fBytes(shapeDim, cat(fVarint(dimSize, 3), fString(2, "\xed\xa0\x80")))), wFloats(1, 2, 3)))},
		{name: "invalid UTF-8 dim name, other output", cands: abc, k: 3, want: "malformed",
			wire: cat(scores, wEntry("other", fBytes(tensorShape, fBytes(shapeDim, fString(2, "\xff")))))},
		{name: "invalid UTF-8 in an unknown field", cands: abc, k: 3, wire: cat(scores, fString(3, "\xff"))},
		{name: "packed float_val of 5 bytes", cands: abc, k: 3, want: "malformed",
			wire: wEntry("scores", cat(wDType(dtFloat), wShape(1), fBytes(tensorFloatVal, []byte{0, 0, 128, 63, 0})))},
		{name: "packed double_val of 12 bytes", cands: abc, k: 3, want: "malformed",
			wire: wEntry("scores", cat(wDType(dtDouble), wShape(1), fBytes(tensorDoubleVal, make([]byte, 12))))},
		{name: "packed float_val of 5 bytes, unread output", cands: abc, k: 3, want: "malformed",
			wire: cat(scores, wEntry("other", fBytes(tensorFloatVal, []byte{1, 2, 3, 4, 5})))},
		{name: "packed dcomplex_val of 12 bytes", cands: abc, k: 3, want: "malformed",
			wire: wEntry("scores", cat(wDType(dtFloat), wShape(3), wFloats(1, 2, 3), fBytes(12, make([]byte, 12))))},
		{name: "packed int_val with a truncated varint", cands: abc, k: 3, want: "malformed",
			wire: cat(scores, wEntry("other", fBytes(7, []byte{1, 0x80})))},
		{name: "packed int64_val of an overflowing varint", cands: abc, k: 3, want: "malformed",
			wire: cat(wEntry("scores", cat(wDType(dtFloat), wShape(3), wFloats(1, 2, 3), fBytes(10, bytes.Repeat([]byte{0xff}, 10)))))},
		{name: "field number 0", cands: abc, k: 3, want: "malformed", wire: cat(scores, []byte{0x00, 0x01})},
		{name: "field number too large", cands: abc, k: 3, want: "malformed",
			wire: cat(scores, protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), []byte{1})},
		{name: "field number too large in an entry", cands: abc, k: 3, want: "malformed",
			wire: fBytes(responseOutputs, cat(fString(mapKey, "x"), protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), []byte{1}))},
		{name: "end group at the top", cands: abc, k: 3, want: "malformed", wire: cat(scores, protowire.AppendTag(nil, 4, protowire.EndGroupType))},
		{name: "end group in a tensor", cands: abc, k: 3, want: "malformed",
			wire: wEntry("scores", cat(wDType(dtFloat), protowire.AppendTag(nil, 4, protowire.EndGroupType)))},
		{name: "unclosed group", cands: abc, k: 3, want: "malformed", wire: cat(scores, protowire.AppendTag(nil, 20, protowire.StartGroupType))},
		{name: "reserved wire type", cands: abc, k: 3, want: "malformed", wire: cat(scores, []byte{0x0e})},
		{name: "length past the end", cands: abc, k: 3, want: "malformed", wire: cat(scores, []byte{0x0a, 0x7f})},
	}
}

func dtInt64() framework.DataType { return framework.DataType_DT_INT64 }

// The decoder gives the items, or the error, that proto.Unmarshal and
// outputsOf give, through the codec as gRPC calls it.
func TestDecodeResponse(t *testing.T) {
	for _, tc := range responseCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m := &Model{cfg: Config{ModelName: "m", Outputs: Outputs{Scores: "scores", IDs: tc.ids}}}
			req := &backend.Request{Candidates: tc.cands, K: tc.k}

			var ref apis.PredictResponse
			var want []backend.Item
			var wantErr error
			if err := proto.Unmarshal(tc.wire, &ref); err != nil {
				wantErr = fmt.Errorf("malformed: %w", err)
			} else {
				want, wantErr = itemsOf(m, &predictResponse{out: outputsOf(&ref, "scores", tc.ids)}, req)
			}
			switch {
			case tc.want == "" && wantErr != nil:
				t.Fatalf("the reference fails: %v", wantErr)
			case tc.want != "" && (wantErr == nil || !strings.Contains(wantErr.Error(), tc.want)):
				t.Fatalf("the reference gives %v, %v; the case wants an error with %q", want, wantErr, tc.want)
			}

			// gRPC hands the codec the message in one buffer or several.
			codec := newPredictCodec(nil, newResponseDecoder("scores", tc.ids))
			for _, split := range []bool{false, true} {
				wire := bytes.Clone(tc.wire)
				data := mem.BufferSlice{mem.SliceBuffer(wire)}
				if split {
					data = mem.BufferSlice{mem.SliceBuffer(wire[:len(wire)/2]), mem.SliceBuffer(wire[len(wire)/2:])}
				}
				var resp predictResponse
				if err := codec.Unmarshal(data, &resp); err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				clear(wire) // gRPC frees the buffers: what was read must not change
				got, err := itemsOf(m, &resp, req)
				switch {
				case tc.want == "malformed":
					if !errors.Is(err, backend.ErrBadOutput) || !errors.Is(err, errWire) {
						t.Fatalf("items = %v, %v; want a bad output (%v)", got, err, wantErr)
					}
				case wantErr != nil:
					if err == nil || err.Error() != wantErr.Error() {
						t.Fatalf("items = %v, %v; want the error %v", got, err, wantErr)
					}
				case err != nil:
					t.Fatalf("items: %v; want %v", err, want)
				case !slices.Equal(got, want):
					t.Fatalf("items = %v, want %v", got, want)
				}
			}
		})
	}
}

// Whatever the bytes, the decoder does not panic; it refuses exactly what
// proto.Unmarshal refuses and otherwise reads the scores and ids outputs
// the TensorProtos hold, copied out of the bytes.
func FuzzDecodeResponse(f *testing.F) {
	for _, tc := range responseCases(f) {
		f.Add(tc.wire)
	}
	dec := newResponseDecoder("scores", "ids")
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.Clone(b)
		var ref apis.PredictResponse
		refErr := proto.Unmarshal(b, &ref)
		var got outputs
		err := dec.decode(b, &got)
		switch {
		case refErr != nil && err == nil:
			t.Fatalf("decode succeeded, proto.Unmarshal failed: %v", refErr)
		case refErr != nil:
			if !errors.Is(err, errWire) {
				t.Fatalf("decode: %v does not wrap errWire", err)
			}
			return
		case err != nil:
			t.Fatalf("decode: %v; proto.Unmarshal succeeded: %v", err, &ref)
		}
		for i := range b {
			b[i] = 0xa5
		}
		if diff := outputsDiff(got, outputsOf(&ref, "scores", "ids")); diff != "" {
			t.Fatalf("decoded outputs differ from proto.Unmarshal's: %s", diff)
		}
	})
}

// The decoder reads by hand the fields its constants name, and checks the
// rest of the message with protobuf's descriptors, which have no groups
// (that checkField refuses), no extensions, and no message nested in itself
// (so that the decoder needs no recursion limit).
func TestDecoderKnowsTheSchema(t *testing.T) {
	d := newResponseDecoder("scores", "")
	field := func(md protoreflect.MessageDescriptor, num protowire.Number) protoreflect.FieldDescriptor {
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			t.Fatalf("%s has no field %d", md.FullName(), num)
		}
		return fd
	}
	outputs := field(d.response, responseOutputs)
	if !outputs.IsMap() || outputs.MapKey().Kind() != protoreflect.StringKind || outputs.MapValue().Message() != d.tensor || !enforceUTF8(outputs.MapKey()) {
		t.Errorf("%s is not a map<string, TensorProto> with UTF-8 keys", outputs.FullName())
	}
	for _, f := range []struct {
		md   protoreflect.MessageDescriptor
		num  protowire.Number
		kind protoreflect.Kind
		list bool
	}{
		{d.tensor, tensorDType, protoreflect.EnumKind, false},
		{d.tensor, tensorShape, protoreflect.MessageKind, false},
		{d.tensor, tensorContent, protoreflect.BytesKind, false},
		{d.tensor, tensorFloatVal, protoreflect.FloatKind, true},
		{d.tensor, tensorDoubleVal, protoreflect.DoubleKind, true},
		{d.tensor, tensorStringVal, protoreflect.BytesKind, true},
		{d.shape, shapeDim, protoreflect.MessageKind, true},
		{d.dim, dimSize, protoreflect.Int64Kind, false},
	} {
		fd := field(f.md, f.num)
		if fd.Kind() != f.kind || fd.IsList() != f.list {
			t.Errorf("%s is %v (list %v), the decoder reads %v (list %v)", fd.FullName(), fd.Kind(), fd.IsList(), f.kind, f.list)
		}
	}
	if field(d.tensor, tensorShape).Message() != d.shape || field(d.shape, shapeDim).Message() != d.dim {
		t.Error("the shape descriptors are not the TensorProto's")
	}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor, path []protoreflect.FullName)
	walk = func(md protoreflect.MessageDescriptor, path []protoreflect.FullName) {
		if slices.Contains(path, md.FullName()) {
			t.Errorf("%s nests itself: %v", md.FullName(), path)
			return
		}
		path = append(path, md.FullName())
		seen[md.FullName()] = true
		if md.ExtensionRanges().Len() > 0 {
			t.Errorf("%s has extension ranges", md.FullName())
		}
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.Kind() == protoreflect.GroupKind {
				t.Errorf("%s is a group", fd.FullName())
			}
			if fd.Message() != nil {
				walk(fd.Message(), path)
			}
		}
	}
	walk(d.response, nil)
	if !seen["tensorflow.serving.ModelSpec"] || !seen["google.protobuf.Int64Value"] {
		t.Errorf("the walk missed messages: saw %v", seen)
	}
}

// BenchmarkDecodeResponse measures what reading a response costs once gRPC
// has its bytes: decoding them (as TF Serving sends them: the model spec,
// and the scores as float_val of shape [1, C]) and ranking the items.
func BenchmarkDecodeResponse(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("candidates=%d", n), func(b *testing.B) {
			cands := make([]string, n)
			scores := make([]float32, n)
			for i := range cands {
				cands[i] = fmt.Sprintf("item-%05d", i)
				scores[i] = float32(tfservingtest.DefaultScore(1, cands[i]))
			}
			wire := marshal(b, &apis.PredictResponse{
				ModelSpec: &apis.ModelSpec{Name: "ranker", VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(1)}, SignatureName: DefaultSignature},
				Outputs: map[string]*framework.TensorProto{"scores": {Dtype: framework.DataType_DT_FLOAT,
					TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: 1}, {Size: int64(n)}}}, FloatVal: scores}},
			})
			m := newModel(Config{ModelName: "ranker", Outputs: Outputs{Scores: "scores"}}, nil, func() {})
			req := &backend.Request{Candidates: cands, K: 10}
			b.ReportAllocs()
			for b.Loop() {
				resp := new(predictResponse)
				if err := m.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, resp); err != nil {
					b.Fatal(err)
				}
				if _, err := itemsOf(m, resp, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
