package oip

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

// The protocol's datatypes the gateway sends or reads.
const (
	dtBool  = "BOOL"
	dtInt32 = "INT32"
	dtInt64 = "INT64"
	dtFP32  = "FP32"
	dtFP64  = "FP64"
	dtBytes = "BYTES"
)

// datatypes maps the featurizer's dtypes to the protocol's.
var datatypes = [...]string{
	featurizer.Float32: dtFP32,
	featurizer.Float64: dtFP64,
	featurizer.Int32:   dtInt32,
	featurizer.Int64:   dtInt64,
	featurizer.String:  dtBytes,
	featurizer.Bool:    dtBool,
}

// datatype is the protocol's datatype of d, "" for an invalid d.
func datatype(d featurizer.DType) string {
	if int(d) < len(datatypes) {
		return datatypes[d]
	}
	return ""
}

// checkInput checks that an input tensor is well formed before it is sent:
// a known dtype, and as many elements as its shape holds.
func checkInput(t *featurizer.Tensor) (string, error) {
	dt := datatype(t.DType)
	if dt == "" {
		return "", badInput("input %q has dtype %s", t.Name, t.DType)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return "", badInput("input %q has shape %s", t.Name, backend.ShapeString(t.Shape))
		}
		n *= d
	}
	if int64(t.Len()) != n {
		return "", badInput("input %q has %d elements for shape %s", t.Name, t.Len(), backend.ShapeString(t.Shape))
	}
	return dt, nil
}

// output is one output tensor as a transport read it: its datatype, shape
// and elements, in the slice of its datatype (scores in f32 or f64, ids in
// strs). It may hold references to the response's bytes.
type output struct {
	datatype string
	shape    []int64
	f32      []float32
	f64      []float64
	strs     [][]byte
	// count is the number of elements read, whichever slice holds them.
	count int
}

// answer is what an inference call returned of the mapped outputs; a nil
// output was not in the response.
type answer struct {
	scores, ids *output
}

// scoreVec is a scores output as backend.Scores.
type scoreVec struct {
	f32 []float32
	f64 []float64
}

// Len is the number of scores.
func (s *scoreVec) Len() int {
	if s.f64 != nil {
		return len(s.f64)
	}
	return len(s.f32)
}

// At is score i.
func (s *scoreVec) At(i int) float64 {
	if s.f64 != nil {
		return s.f64[i]
	}
	return float64(s.f32[i])
}

// row is the scores of row r of a scores output of rows of n.
func (s *scoreVec) row(r, n int) *scoreVec {
	if s.f64 != nil {
		return &scoreVec{f64: s.f64[r*n : (r+1)*n]}
	}
	return &scoreVec{f32: s.f32[r*n : (r+1)*n]}
}

// readScores checks the scores output against the b rows of n items it
// must score: shape [b, N], or, when b is 1, [N] or [1, N], with N = n.
func readScores(o *output, name string, b, n int) (*scoreVec, error) {
	got, err := backend.RowLen(name, o.shape, b)
	if err != nil {
		return nil, fmt.Errorf("oip infer: %w", err)
	}
	if got != n {
		return nil, badOutput("output %q has %d scores for %d items", name, got, n)
	}
	switch o.datatype {
	case dtFP32:
		if len(o.f32) != b*n {
			return nil, badOutput("output %q has %d values for shape %s", name, o.count, backend.ShapeString(o.shape))
		}
		return &scoreVec{f32: o.f32}, nil
	case dtFP64:
		if len(o.f64) != b*n {
			return nil, badOutput("output %q has %d values for shape %s", name, o.count, backend.ShapeString(o.shape))
		}
		return &scoreVec{f64: o.f64}, nil
	}
	return nil, badOutput("output %q is %s, want FP32 or FP64", name, o.datatype)
}

// readIDs reads the ids output of b rows: BYTES of shape [b, N], or, when
// b is 1, [N] or [1, N]. It returns the ids of all rows, in order, and N.
func readIDs(o *output, name string, b int) ([][]byte, int, error) {
	if o.datatype != dtBytes {
		return nil, 0, badOutput("output %q is %s, want BYTES", name, o.datatype)
	}
	n, err := backend.RowLen(name, o.shape, b)
	if err != nil {
		return nil, 0, fmt.Errorf("oip infer: %w", err)
	}
	if len(o.strs) != b*n {
		return nil, 0, badOutput("output %q has %d values for shape %s", name, o.count, backend.ShapeString(o.shape))
	}
	return o.strs, n, nil
}

// elements is the number of elements of a shape, or false when a dimension
// is negative or there are more than backend.MaxOutputRows: the outputs the
// gateway reads hold at most that many rows (a batch's rows together), and
// a larger claim must not size an allocation.
func elements(shape []int64) (int, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > backend.MaxOutputRows/d) {
			return 0, false
		}
		n *= d
	}
	return int(n), n <= backend.MaxOutputRows
}

// decodeRaw reads an output's raw contents (raw_output_contents) as
// datatype says: row-major, little-endian, a BYTES element as a 4-byte
// little-endian length followed by its bytes. raw must hold exactly the
// shape's elements; datatypes other than FP32, FP64 and BYTES are only
// counted, as the gateway reads no other. The BYTES elements refer to raw.
func decodeRaw(o *output, raw []byte) error {
	n, ok := elements(o.shape)
	if !ok {
		return fmt.Errorf("shape %s is not a vector of at most %d rows", backend.ShapeString(o.shape), backend.MaxOutputRows)
	}
	size := rawSize(o.datatype)
	switch {
	case o.datatype == dtBytes:
		strs := make([][]byte, 0, min(n, len(raw)/4))
		for len(raw) > 0 {
			if len(raw) < 4 {
				return fmt.Errorf("BYTES element %d: %d bytes left for a 4-byte length", len(strs), len(raw))
			}
			l := binary.LittleEndian.Uint32(raw)
			raw = raw[4:]
			if uint64(l) > uint64(len(raw)) {
				return fmt.Errorf("BYTES element %d: length %d with %d bytes left", len(strs), l, len(raw))
			}
			if len(strs) == n {
				return fmt.Errorf("more than the %d BYTES elements of shape %s", n, backend.ShapeString(o.shape))
			}
			strs = append(strs, raw[:l:l])
			raw = raw[l:]
		}
		if len(strs) != n {
			return fmt.Errorf("%d BYTES elements for shape %s", len(strs), backend.ShapeString(o.shape))
		}
		o.strs, o.count = strs, n
		return nil
	case size == 0:
		return fmt.Errorf("datatype %q has no raw form", o.datatype)
	case len(raw) != n*size:
		return fmt.Errorf("%d bytes of %s for shape %s, want %d", len(raw), o.datatype, backend.ShapeString(o.shape), n*size)
	}
	o.count = n
	switch o.datatype {
	case dtFP32:
		o.f32 = make([]float32, n)
		for i := range o.f32 {
			o.f32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case dtFP64:
		o.f64 = make([]float64, n)
		for i := range o.f64 {
			o.f64[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	}
	return nil
}

// rawSize is the size of one element of a fixed-width datatype in raw
// contents, 0 for BYTES and unknown datatypes.
func rawSize(dt string) int {
	switch dt {
	case dtBool, "INT8", "UINT8":
		return 1
	case "INT16", "UINT16", "FP16", "BF16":
		return 2
	case dtInt32, "UINT32", dtFP32:
		return 4
	case dtInt64, "UINT64", dtFP64:
		return 8
	}
	return 0
}
