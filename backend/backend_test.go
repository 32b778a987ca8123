package backend_test

import (
	"context"
	"errors"
	"fmt"
	"math"
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
