package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
)

func rawF32(fs ...float32) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func rawStrings(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// Raw contents: little-endian fixed-width elements, BYTES as 4-byte
// little-endian lengths and bytes, exactly the shape's elements.
func TestDecodeRaw(t *testing.T) {
	cases := []struct {
		name     string
		datatype string
		shape    []int64
		raw      []byte
		f32      []float32
		f64      []float64
		strs     []string
		err      string
	}{
		{name: "fp32", datatype: "FP32", shape: []int64{1, 2}, raw: rawF32(0.5, -2), f32: []float32{0.5, -2}},
		{name: "fp64", datatype: "FP64", shape: []int64{1}, raw: binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.25)), f64: []float64{0.25}},
		{name: "bytes", datatype: "BYTES", shape: []int64{3}, raw: rawStrings("a", "", "héllo"), strs: []string{"a", "", "héllo"}},
		{name: "empty", datatype: "BYTES", shape: []int64{1, 0}, raw: nil, strs: []string{}},
		{name: "fp32 short", datatype: "FP32", shape: []int64{2}, raw: rawF32(1)[:3], err: "3 bytes of FP32"},
		{name: "fp32 long", datatype: "FP32", shape: []int64{1}, raw: rawF32(1, 2), err: "8 bytes of FP32"},
		{name: "bytes cut length", datatype: "BYTES", shape: []int64{2}, raw: rawStrings("a")[:3], err: "4-byte length"},
		{name: "bytes cut element", datatype: "BYTES", shape: []int64{1}, raw: rawStrings("abc")[:5], err: "length 3 with 1 bytes left"},
		{name: "bytes too many", datatype: "BYTES", shape: []int64{1}, raw: rawStrings("a", "b"), err: "more than the 1"},
		{name: "bytes too few", datatype: "BYTES", shape: []int64{3}, raw: rawStrings("a", "b"), err: "2 BYTES elements"},
		{name: "huge length", datatype: "BYTES", shape: []int64{1}, raw: []byte{0xff, 0xff, 0xff, 0xff}, err: "length 4294967295"},
		{name: "shape too large", datatype: "FP32", shape: []int64{1 << 21}, raw: nil, err: "not a vector of at most"},
		{name: "shape overflow", datatype: "FP32", shape: []int64{1 << 40, 1 << 40}, raw: nil, err: "not a vector"},
		{name: "negative shape", datatype: "FP32", shape: []int64{-1}, raw: nil, err: "not a vector"},
		{name: "unknown datatype", datatype: "STRING", shape: []int64{1}, raw: []byte{1}, err: "no raw form"},
		{name: "int64 counted", datatype: "INT64", shape: []int64{2}, raw: make([]byte, 16)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := &output{datatype: tc.datatype, shape: tc.shape}
			err := decodeRaw(o, tc.raw)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var strs []string
			for _, s := range o.strs {
				strs = append(strs, string(s))
			}
			if !slices.Equal(o.f32, tc.f32) || !slices.Equal(o.f64, tc.f64) || !slices.Equal(strs, tc.strs) && len(tc.strs)+len(strs) > 0 {
				t.Fatalf("got %v %v %q", o.f32, o.f64, strs)
			}
		})
	}
}

// The JSON of an inference response: flat or nested data, FP32 read at
// 32-bit precision, BYTES as strings, other outputs skipped.
func TestDecodeJSONAnswer(t *testing.T) {
	names := &Outputs{Scores: "scores", IDs: "ids"}
	cases := []struct {
		name   string
		body   string
		scores []float64
		ids    []string
		err    string
	}{
		{name: "flat", body: `{"model_name": "m", "outputs": [{"name": "scores", "datatype": "FP32", "shape": [2], "data": [0.1, 2]},
			{"name": "ids", "datatype": "BYTES", "shape": [2], "data": ["a", "b\u00e9"]}]}`,
			scores: []float64{float64(float32(0.1)), 2}, ids: []string{"a", "bé"}},
		{name: "nested and other outputs", body: `{"outputs": [{"name": "logits", "datatype": "FP16", "shape": [1], "data": [1]},
			{"name": "scores", "datatype": "FP64", "shape": [1, 3], "data": [[0.1, 0.2, 1e2]]},
			{"name": "ids", "datatype": "BYTES", "shape": [1, 3], "data": [["x", "y", "z"]]}]}`,
			scores: []float64{0.1, 0.2, 100}, ids: []string{"x", "y", "z"}},
		{name: "too many elements", body: `{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1], "data": [1, 2]}]}`, err: "more than the 1"},
		{name: "too few elements", body: `{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [3], "data": [1, 2]}]}`, err: "2 elements for shape"},
		{name: "string in scores", body: `{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1], "data": ["1"]}]}`, err: "where FP32 elements"},
		{name: "number in ids", body: `{"outputs": [{"name": "ids", "datatype": "BYTES", "shape": [1], "data": [1]}]}`, err: "where BYTES elements"},
		{name: "twice", body: `{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [0], "data": []}, {"name": "scores", "datatype": "FP32", "shape": [0], "data": []}]}`, err: "twice"},
		{name: "no data", body: `{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1]}]}`, err: "no data"},
		{name: "huge shape", body: `{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [4000000000], "data": []}]}`, err: "not a vector"},
		{name: "not JSON", body: `{"outputs": [`, err: "not the protocol's JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ans, err := decodeJSONAnswer([]byte(tc.body), names)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sv, err := readScores(ans.scores, "scores", 1, len(tc.scores))
			if err != nil {
				t.Fatal(err)
			}
			var got []float64
			for i := range sv.Len() {
				got = append(got, sv.At(i))
			}
			ids, _, err := readIDs(ans.ids, "ids", 1)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, id := range ids {
				gotIDs = append(gotIDs, string(id))
			}
			if !slices.Equal(got, tc.scores) || !slices.Equal(gotIDs, tc.ids) {
				t.Fatalf("scores %v ids %q, want %v %q", got, gotIDs, tc.scores, tc.ids)
			}
		})
	}
}

// FuzzDecodeJSONAnswer feeds arbitrary bodies to the HTTP response decoder
// and what it reads to the ranking: never a panic, and never more elements
// than the shape allows.
func FuzzDecodeJSONAnswer(f *testing.F) {
	f.Add([]byte(`{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1, 2], "data": [[0.5, 1]]}, {"name": "ids", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}`))
	f.Add([]byte(`{"outputs": [{"name": "scores", "datatype": "FP64", "shape": [2], "data": [1e308, -0]}]}`))
	f.Add([]byte(`{"outputs": [{"name": "ids", "datatype": "BYTES", "shape": [1048577], "data": []}]}`))
	f.Add([]byte(`{"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1], "data": [[[[1]]]]}]}`))
	names := &Outputs{Scores: "scores", IDs: "ids"}
	f.Fuzz(func(t *testing.T, body []byte) {
		ans, err := decodeJSONAnswer(body, names)
		if err != nil {
			return
		}
		for _, o := range []*output{ans.scores, ans.ids} {
			if o == nil {
				continue
			}
			n, ok := elements(o.shape)
			if o.count > 0 && (!ok || o.count != n || len(o.f32)+len(o.f64)+len(o.strs) != n) {
				t.Fatalf("%d elements read for shape %v", o.count, o.shape)
			}
		}
		checkAnswer(t, ans)
	})
}

// FuzzDecodeRaw feeds arbitrary raw contents and shapes to the raw decoder:
// never a panic, and on success exactly the shape's elements.
func FuzzDecodeRaw(f *testing.F) {
	f.Add("FP32", int64(1), int64(2), rawF32(1, 2))
	f.Add("BYTES", int64(2), int64(1), rawStrings("ab", "c"))
	f.Add("FP64", int64(1), int64(1), make([]byte, 8))
	f.Add("BYTES", int64(1), int64(1), []byte{0xff, 0xff, 0xff, 0x7f, 'a'})
	f.Fuzz(func(t *testing.T, datatype string, d0, d1 int64, raw []byte) {
		o := &output{datatype: datatype, shape: []int64{d0, d1}}
		if err := decodeRaw(o, raw); err != nil {
			return
		}
		n, ok := elements(o.shape)
		if !ok || o.count != n {
			t.Fatalf("%d elements for shape %v", o.count, o.shape)
		}
		if l := len(o.f32) + len(o.f64) + len(o.strs); l != 0 && l != n {
			t.Fatalf("%d values for %d elements", l, n)
		}
		ans := answer{scores: o}
		if datatype == dtBytes {
			ans = answer{ids: o}
		}
		checkAnswer(t, ans)
	})
}

// checkAnswer ranks an answer's outputs in both modes, as the answer to
// one request and to a batch of two, which may fail but must not panic nor
// return more than k items a request.
func checkAnswer(t *testing.T, ans answer) {
	t.Helper()
	m := &Model{cfg: Config{ModelName: "m", Outputs: Outputs{Scores: "scores", IDs: "ids"}}}
	var cands []string
	if ans.scores != nil {
		for i := range min(ans.scores.count, 64) {
			cands = append(cands, fmt.Sprint(i))
		}
	}
	for b := 1; b <= 2; b++ {
		reqs := make([]*backend.Request, b)
		for r := range reqs {
			reqs[r] = &backend.Request{K: 3}
		}
		check := func() {
			t.Helper()
			lists := make([][]backend.Item, b)
			if err := m.items(ans, reqs, lists); err == nil {
				for _, items := range lists {
					if len(items) > 3 {
						t.Fatalf("%d items for k = 3", len(items))
					}
				}
			}
		}
		m.cfg.Outputs.IDs = "ids"
		check()
		m.cfg.Outputs.IDs = ""
		for _, req := range reqs {
			req.Candidates = cands[:len(cands)/b]
		}
		check()
	}
}
