package backend_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

func ints(name string, shape []int64, v ...int64) featurizer.Tensor {
	return featurizer.Tensor{Name: name, DType: featurizer.Int64, Shape: shape, Int64: v}
}

func strs(name string, shape []int64, v ...string) featurizer.Tensor {
	return featurizer.Tensor{Name: name, DType: featurizer.String, Shape: shape, String: v}
}

func TestCheckStack(t *testing.T) {
	req := func(in ...featurizer.Tensor) *backend.Request { return &backend.Request{Inputs: in, K: 1} }
	for _, tc := range []struct {
		name string
		reqs []*backend.Request
		ok   bool
	}{
		{"same shapes", []*backend.Request{req(ints("u", []int64{1}, 1), strs("r", []int64{1, 2}, "a", "b")), req(ints("u", []int64{1}, 2), strs("r", []int64{1, 2}, "c", "d"))}, true},
		{"one request without inputs", []*backend.Request{req()}, true},
		{"no requests", nil, true},
		{"several without inputs", []*backend.Request{req(), req()}, false},
		{"other lengths", []*backend.Request{req(strs("r", []int64{1, 2}, "a", "b")), req(strs("r", []int64{1, 1}, "c"))}, false},
		{"other names", []*backend.Request{req(ints("u", []int64{1}, 1)), req(ints("v", []int64{1}, 1))}, false},
		{"other dtypes", []*backend.Request{req(ints("u", []int64{1}, 1)), req(strs("u", []int64{1}, "1"))}, false},
		{"leading dimension 2", []*backend.Request{req(ints("u", []int64{2}, 1, 2)), req(ints("u", []int64{2}, 1, 2))}, false},
		{"a scalar", []*backend.Request{req(ints("u", nil, 1)), req(ints("u", nil, 1))}, false},
		{"other input counts", []*backend.Request{req(ints("u", []int64{1}, 1)), req(ints("u", []int64{1}, 1), ints("w", []int64{1}, 1))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := backend.CheckStack(tc.reqs)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, backend.ErrNotStackable)) {
				t.Fatalf("CheckStack = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestStack(t *testing.T) {
	a := &backend.Request{Inputs: []featurizer.Tensor{ints("u", []int64{1}, 1), strs("r", []int64{1, 2}, "a", "b"), strs("e", []int64{1, 0})}}
	b := &backend.Request{Inputs: []featurizer.Tensor{ints("u", []int64{1}, 2), strs("r", []int64{1, 2}, "c", "d"), strs("e", []int64{1, 0})}}
	got := backend.Stack([]*backend.Request{a, b})
	want := []featurizer.Tensor{ints("u", []int64{2}, 1, 2), strs("r", []int64{2, 2}, "a", "b", "c", "d"), strs("e", []int64{2, 0})}
	want[2].String = []string{}
	if len(got) != len(want) {
		t.Fatalf("%d inputs, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.Int64, w.Int64) ||
			!slices.Equal(g.String, w.String) || (g.Values() == nil) != (w.Values() == nil) {
			t.Errorf("input %d = %+v, want %+v", i, g, w)
		}
	}
	if a.Inputs[0].Shape[0] != 1 {
		t.Errorf("Stack changed a request's shape: %v", a.Inputs[0].Shape)
	}
}

func TestSplitBatch(t *testing.T) {
	errBad := errors.New("bad input")
	req := func(k int, cands []string) *backend.Request { return &backend.Request{K: k, Candidates: cands} }
	out, call, at, err := backend.SplitBatch([]*backend.Request{req(2, []string{"a"}), req(1, []string{}), req(3, []string{"b"})}, true, errBad, "m")
	if err != nil || len(out) != 3 || out[1] == nil || len(out[1]) != 0 || len(call) != 2 || !slices.Equal(at, []int{0, 2}) {
		t.Fatalf("SplitBatch = %v, %v, %v, %v", out, call, at, err)
	}
	for _, tc := range []struct {
		name    string
		reqs    []*backend.Request
		aligned bool
		want    error
	}{
		{"k 0", []*backend.Request{req(1, []string{"a"}), req(0, []string{"a"})}, true, errBad},
		{"no candidates", []*backend.Request{req(1, nil)}, true, errBad},
		{"other numbers of candidates", []*backend.Request{req(1, []string{"a"}), req(1, []string{"a", "b"})}, true, backend.ErrNotStackable},
		{"too many rows", []*backend.Request{req(1, make([]string, backend.MaxOutputRows/2+1)), req(1, make([]string, backend.MaxOutputRows/2+1))}, true, backend.ErrNotStackable},
		{"ids models rank any candidates", []*backend.Request{req(1, []string{"a"}), req(1, nil), req(1, make([]string, backend.MaxOutputRows))}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := backend.SplitBatch(tc.reqs, tc.aligned, errBad, "m")
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("SplitBatch: %v, want %v", err, tc.want)
			}
		})
	}
}
