package backend

import (
	"fmt"
	"slices"

	"github.com/modelgate/modelgate/featurizer"
)

// SplitBatch sorts the requests of a batch that a remote backend scores in
// one call. Those CheckRequest answers without a call get that answer in
// out, at their place; a refusal of any is the batch's error ("request r:
// …"). The others are returned in call, in order, with their places in
// reqs in at. With candidatesAligned (a model that scores each request's
// candidates, a row of scores each), the requests in call must have as
// many candidates, and no more together than MaxOutputRows, or the error
// wraps ErrNotStackable: the answer could not be read, each request alone
// may be.
func SplitBatch(reqs []*Request, candidatesAligned bool, sentinel error, model string) (out [][]Item, call []*Request, at []int, err error) {
	out = make([][]Item, len(reqs))
	for r, req := range reqs {
		if items, done, err := CheckRequest(req, candidatesAligned, sentinel, model); done {
			if err != nil {
				return nil, nil, nil, fmt.Errorf("request %d: %w", r, err)
			}
			out[r] = items
			continue
		}
		if candidatesAligned && len(call) > 0 && len(req.Candidates) != len(call[0].Candidates) {
			return nil, nil, nil, fmt.Errorf("%d candidates and %d: %w", len(call[0].Candidates), len(req.Candidates), ErrNotStackable)
		}
		call = append(call, req)
		at = append(at, r)
	}
	if len(call) > 0 && candidatesAligned {
		if n := len(call[0].Candidates); n > MaxOutputRows/len(call) {
			return nil, nil, nil, fmt.Errorf("%d requests of %d candidates, more than the %d rows a response may rank: %w",
				len(call), n, MaxOutputRows, ErrNotStackable)
		}
	}
	return out, call, at, nil
}

// CheckStack reports whether the inputs of reqs stack along the batch
// dimension into the inputs of one call: every request has as many
// inputs, input i of the same name and dtype in all of them, of leading
// dimension 1 and the same shape beyond it; and, with several requests,
// at least one input (without any, a call has no batch dimension).
// Otherwise the error wraps ErrNotStackable.
func CheckStack(reqs []*Request) error {
	if len(reqs) == 0 {
		return nil
	}
	first := reqs[0].Inputs
	if len(first) == 0 && len(reqs) > 1 {
		return fmt.Errorf("requests without inputs have no batch dimension: %w", ErrNotStackable)
	}
	for _, req := range reqs {
		if len(req.Inputs) != len(first) {
			return fmt.Errorf("%d inputs and %d: %w", len(first), len(req.Inputs), ErrNotStackable)
		}
	}
	for i := range first {
		f := &first[i]
		for _, req := range reqs {
			t := &req.Inputs[i]
			if t.Name != f.Name || t.DType != f.DType || len(t.Shape) == 0 || t.Shape[0] != 1 ||
				!slices.Equal(t.Shape[1:], f.Shape[1:]) {
				return fmt.Errorf("input %q %s %v and %q %s %v: %w",
					f.Name, f.DType, f.Shape, t.Name, t.DType, t.Shape, ErrNotStackable)
			}
		}
	}
	return nil
}

// Stack returns the inputs of reqs, which CheckStack accepts, stacked
// along the batch dimension: input i holds the values of input i of every
// request, in order, and its leading dimension is len(reqs).
func Stack(reqs []*Request) []featurizer.Tensor {
	if len(reqs) == 1 {
		return reqs[0].Inputs
	}
	out := make([]featurizer.Tensor, len(reqs[0].Inputs))
	for i := range out {
		f := &reqs[0].Inputs[i]
		t := featurizer.Tensor{Name: f.Name, DType: f.DType, Shape: slices.Clone(f.Shape)}
		t.Shape[0] = int64(len(reqs))
		n := f.Len() * len(reqs)
		switch f.DType { // non-nil, as the requests' own, even when empty
		case featurizer.Float32:
			t.Float32 = make([]float32, 0, n)
		case featurizer.Float64:
			t.Float64 = make([]float64, 0, n)
		case featurizer.Int32:
			t.Int32 = make([]int32, 0, n)
		case featurizer.Int64:
			t.Int64 = make([]int64, 0, n)
		case featurizer.String:
			t.String = make([]string, 0, n)
		case featurizer.Bool:
			t.Bool = make([]bool, 0, n)
		}
		for _, req := range reqs {
			in := &req.Inputs[i]
			t.Float32 = append(t.Float32, in.Float32...)
			t.Float64 = append(t.Float64, in.Float64...)
			t.Int32 = append(t.Int32, in.Int32...)
			t.Int64 = append(t.Int64, in.Int64...)
			t.String = append(t.String, in.String...)
			t.Bool = append(t.Bool, in.Bool...)
		}
		out[i] = t
	}
	return out
}
