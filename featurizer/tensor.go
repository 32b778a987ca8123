package featurizer

import "fmt"

// DType is the element type of a Tensor. The zero value is invalid.
type DType uint8

// The dtypes a feature spec may name, spelled as in API.md.
const (
	Float32 DType = iota + 1
	Float64
	Int32
	Int64
	String
	Bool
)

var dtypeNames = [...]string{Float32: "float32", Float64: "float64", Int32: "int32", Int64: "int64", String: "string", Bool: "bool"}

// String returns the dtype's name as written in a feature spec.
func (d DType) String() string {
	if d >= Float32 && d <= Bool {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// ParseDType reads a dtype name ("float32", "int64", …).
func ParseDType(s string) (DType, error) {
	for d := Float32; d <= Bool; d++ {
		if dtypeNames[d] == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q (want float32, float64, int32, int64, string or bool)", s)
}

// Tensor is one named, typed model input, independent of the backend that
// consumes it. Exactly one of the value slices, the one matching DType, is
// set; it holds the elements in row-major order. Shape always has a leading
// batch dimension of 1: a scalar is [1], a list [1, L].
type Tensor struct {
	Name    string
	DType   DType
	Shape   []int64
	Float32 []float32
	Float64 []float64
	Int32   []int32
	Int64   []int64
	String  []string
	Bool    []bool
}

// Values returns the slice of the tensor's dtype ([]float32, []float64,
// []int32, []int64, []string or []bool), nil for an invalid dtype.
func (t *Tensor) Values() any {
	switch t.DType {
	case Float32:
		return t.Float32
	case Float64:
		return t.Float64
	case Int32:
		return t.Int32
	case Int64:
		return t.Int64
	case String:
		return t.String
	case Bool:
		return t.Bool
	}
	return nil
}

// Len is the number of elements the tensor holds.
func (t *Tensor) Len() int {
	switch t.DType {
	case Float32:
		return len(t.Float32)
	case Float64:
		return len(t.Float64)
	case Int32:
		return len(t.Int32)
	case Int64:
		return len(t.Int64)
	case String:
		return len(t.String)
	case Bool:
		return len(t.Bool)
	}
	return 0
}

// Request is the raw material a feature spec reads: the recommend call's
// fields after decoding. Features holds JSON-decoded values (float64, string,
// bool, []any, map[string]any or nil). Candidates has excluded items removed
// already. A Request is read only by Build.
type Request struct {
	UserID     string
	Context    map[string]string
	Features   map[string]any
	Candidates []string
}

// FieldError is a spec or request error that names the field at fault, e.g.
// "features.inputs.age.boundaries" for a spec or "features.age" for a request.
// Field is empty when the whole document is at fault (a spec that is not a JSON
// object).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}
