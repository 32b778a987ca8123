package backend

import (
	"fmt"
	"strings"

	"github.com/modelgate/modelgate/featurizer"
)

// MaxOutputRows bounds the rows (scores, ids) of one model answer the
// gateway ranks: a server's answer of a few bytes can claim any shape.
const MaxOutputRows = 1 << 20

// RowLen returns N for an output of b rows of N, row r answering the r-th
// request of a batch of b: shape [b, N], or, when b is 1, [N] or [1, N].
// Any other shape, or b·N above MaxOutputRows, is an error wrapping
// ErrBadOutput naming the output.
func RowLen(name string, dims []int64, b int) (int, error) {
	b = max(b, 1)
	var n int64
	switch {
	case b == 1 && len(dims) == 1 && dims[0] >= 0:
		n = dims[0]
	case len(dims) == 2 && dims[0] == int64(b) && dims[1] >= 0:
		n = dims[1]
	case b == 1:
		return 0, fmt.Errorf("%w: output %q has shape %s, want [N] or [1, N]", ErrBadOutput, name, ShapeString(dims))
	default:
		return 0, fmt.Errorf("%w: output %q has shape %s, want [%d, N] for a batch of %d", ErrBadOutput, name, ShapeString(dims), b, b)
	}
	if n > MaxOutputRows/int64(b) {
		if b == 1 {
			return 0, fmt.Errorf("%w: output %q has %d rows, more than the %d a response may rank", ErrBadOutput, name, n, MaxOutputRows)
		}
		return 0, fmt.Errorf("%w: output %q has %d rows for each of %d requests, more than the %d a response may rank", ErrBadOutput, name, n, b, MaxOutputRows)
	}
	return int(n), nil
}

// OutputShapeOK reports whether a model's declared output shape can hold a
// vector of N rows: rank 1, or rank 2 with a batch dimension of 1 or -1
// (any). -1 dimensions match any size.
func OutputShapeOK(dims []int64) bool {
	switch len(dims) {
	case 1:
		return true
	case 2:
		return dims[0] == -1 || dims[0] == 1
	}
	return false
}

// ShapeMismatch says why a model's declared input shape (-1: any size)
// cannot take the tensors the input builds ([1] for a scalar, [1, L] for a
// list), or returns "".
func ShapeMismatch(dims []int64, in featurizer.InputInfo) string {
	rank := len(dims)
	switch {
	case in.Rank == 0 && rank != 1 && rank != 2:
		return fmt.Sprintf("the feature spec builds shape [1] or [1, L] but the shape is %s", ShapeString(dims))
	case in.Rank == 1 && rank != 1:
		return fmt.Sprintf("the feature spec builds a scalar, shape [1], but the shape is %s (rank %d); give the input a transform \"list\" or a \"length\" if the model takes a list", ShapeString(dims), rank)
	case in.Rank == 2 && rank != 2:
		return fmt.Sprintf("the feature spec builds a list, shape [1, L], but the shape is %s (rank %d)", ShapeString(dims), rank)
	}
	if b := dims[0]; b != -1 && b != 1 {
		return fmt.Sprintf("the batch dimension is %d, want 1 or unknown (shape %s)", b, ShapeString(dims))
	}
	if rank == 2 {
		switch l := dims[1]; {
		case l == -1:
		case in.Length < 0:
			return fmt.Sprintf("the list length follows the request but the model fixes it at %d (shape %s); give the input \"length\": %d", l, ShapeString(dims), l)
		case int64(in.Length) != l:
			return fmt.Sprintf("the feature spec builds lists of length %d but the shape is %s", in.Length, ShapeString(dims))
		}
	}
	return ""
}

// ShapeString writes dim sizes as [-1, 20].
func ShapeString(dims []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range dims {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}
