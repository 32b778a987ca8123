package backend_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
)

func TestClassify(t *testing.T) {
	sentinel := errors.New("x: bad input")
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("arm: %w", context.DeadlineExceeded), backend.ClassDeadline},
		{fmt.Errorf("arm: %w", context.Canceled), backend.ClassCanceled},
		{fmt.Errorf("arm: %w: refused", backend.ErrUnavailable), backend.ClassUnavailable},
		{fmt.Errorf("arm: %w: NaN", backend.ErrBadOutput), backend.ClassBadOutput},
		{fmt.Errorf("arm: %w", backend.RejectInput(sentinel, "shape %v", []int{1, 2})), backend.ClassRejected},
		{fmt.Errorf("arm: %w: no list for u1", backend.ErrNotFound), backend.ClassNotFound},
		{errors.New("boom"), backend.ClassOther},
	}
	for _, tc := range tests {
		if got := backend.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	err := fmt.Errorf("arm: %w", backend.RejectInput(sentinel, "shape %v", []int{1, 2}))
	var ie *backend.InputError
	if !errors.As(err, &ie) || ie.Msg != "shape [1 2]" || !errors.Is(err, sentinel) {
		t.Errorf("RejectInput: %v: message %+v, want %q and the sentinel in the chain", err, ie, "shape [1 2]")
	}
}

func TestCheckScores(t *testing.T) {
	tests := []struct {
		score float64
		bad   bool
	}{{0.5, false}, {-1e300, false}, {math.NaN(), true}, {math.Inf(1), true}, {math.Inf(-1), true}}
	for _, tc := range tests {
		err := backend.CheckScores([]backend.Item{{ID: "a", Score: 1}, {ID: "b", Score: tc.score}})
		if got := errors.Is(err, backend.ErrBadOutput); got != tc.bad {
			t.Errorf("CheckScores(score %v) = %v, want bad output %v", tc.score, err, tc.bad)
		}
	}
}

func TestTopK(t *testing.T) {
	items := func(kv ...any) []backend.Item {
		var out []backend.Item
		for i := 0; i < len(kv); i += 2 {
			out = append(out, backend.Item{ID: kv[i].(string), Score: kv[i+1].(float64)})
		}
		return out
	}
	tests := []struct {
		name    string
		in      []backend.Item
		exclude []string
		k       int
		want    []backend.Item
	}{
		{"best first", items("a", 0.1, "b", 0.9, "c", 0.5), nil, 2, items("b", 0.9, "c", 0.5)},
		{"ties by id", items("d", 1.0, "b", 1.0, "c", 2.0, "a", 1.0), nil, 3, items("c", 2.0, "a", 1.0, "b", 1.0)},
		{"exclude", items("a", 3.0, "b", 2.0, "c", 1.0), []string{"a", "zz"}, 2, items("b", 2.0, "c", 1.0)},
		{"a repeated id keeps its best score", items("a", 0.1, "b", 0.5, "a", 0.9), nil, 3, items("a", 0.9, "b", 0.5)},
		{"k past the list", items("a", 1.0), nil, 5, items("a", 1.0)},
		{"nothing", nil, nil, 5, []backend.Item{}},
		{"all excluded", items("a", 1.0), []string{"a"}, 5, []backend.Item{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var excl map[string]struct{}
			for _, id := range tc.exclude {
				if excl == nil {
					excl = map[string]struct{}{}
				}
				excl[id] = struct{}{}
			}
			got := backend.TopK(tc.in, excl, tc.k)
			if got == nil || !slices.Equal(got, tc.want) {
				t.Fatalf("TopK = %v, want %v", got, tc.want)
			}
		})
	}
}
