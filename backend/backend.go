// Package backend holds the types shared by the model runtimes (embedded,
// TF Serving, …) and the router that calls them.
package backend

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/modelgate/modelgate/featurizer"
)

// Request is one scoring call. Inputs are the featurizer's tensors for the
// version's spec. UserID and Context are the recommend call's own, for
// backends that look answers up by them (precomputed lists) rather than
// compute them from tensors; Context is nil when the call has none and must
// not be changed. Candidates, when non-nil, is the only set of items that may
// be returned (excluded items already removed); Exclude lists items that must
// never be returned. K is the number of items wanted (topk.Min..topk.Max).
// Requests through the router have K checked by topk.Check already; each
// backend refuses a K below 1 again only because it is also called
// directly (tools/benche2e, tests), and a top-k of no items is no answer.
type Request struct {
	Inputs     []featurizer.Tensor
	UserID     string
	Context    map[string]string
	Candidates []string
	Exclude    map[string]struct{}
	K          int
}

// Input returns the input tensor with the given name, or nil.
func (r *Request) Input(name string) *featurizer.Tensor {
	for i := range r.Inputs {
		if r.Inputs[i].Name == name {
			return &r.Inputs[i]
		}
	}
	return nil
}

// Item is one scored item. Score is the model's own score.
type Item struct {
	ID    string  `json:"id"`
	Score float64 `json:"score"`
}

// Error classes an arm failure is counted under.
var (
	// ErrUnavailable: the backend could not be reached or is not loaded.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrBadOutput: the backend answered with outputs of the wrong shape or
	// dtype, or with scores that are not finite numbers: a sick model.
	ErrBadOutput = errors.New("backend returned bad output")
	// ErrRejectedInput: the backend refused the request's input (TF
	// Serving's INVALID_ARGUMENT, a tensor the runtime will not take, a
	// candidates-aligned model called without candidates). The request is
	// at fault, not the model: such a failure never counts against the
	// arm's health. Backends return it as an *InputError.
	ErrRejectedInput = errors.New("the model rejected the input")
	// ErrNotFound: the backend holds no answer for this request (no
	// precomputed list for the user and no default list). The arm is not
	// broken, but it cannot serve this request: it falls back like any
	// other failure.
	ErrNotFound = errors.New("backend has no answer for the request")
)

// InputError is a backend's refusal of a request's input. Msg is the
// backend's own explanation, as it may be shown to the client; Err, when
// set, is the backend's sentinel (e.g. tfserving.ErrBadInput), so
// errors.Is matches both it and ErrRejectedInput.
type InputError struct {
	Msg string
	Err error
}

// RejectInput returns an *InputError with the backend's sentinel and a
// formatted message.
func RejectInput(sentinel error, format string, args ...any) error {
	return &InputError{Err: sentinel, Msg: fmt.Sprintf(format, args...)}
}

func (e *InputError) Error() string {
	if e.Err == nil {
		return ErrRejectedInput.Error() + ": " + e.Msg
	}
	return e.Err.Error() + ": " + e.Msg
}

// Unwrap returns the backend's sentinel, if any.
func (e *InputError) Unwrap() error { return e.Err }

// Is makes every InputError match ErrRejectedInput.
func (e *InputError) Is(target error) bool { return target == ErrRejectedInput }

// CheckScores returns an error wrapping ErrBadOutput when an item's score
// is NaN or ±Inf: such a score cannot be ranked or sent as JSON, and a model
// that produces it is sick.
func CheckScores(items []Item) error {
	for i := range items {
		if s := items[i].Score; math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("%w: item %q has the non-finite score %v", ErrBadOutput, items[i].ID, s)
		}
	}
	return nil
}

// Error classes, as Classify names them.
const (
	ClassUnavailable = "unavailable"
	ClassDeadline    = "deadline"
	ClassBadOutput   = "bad_output"
	ClassCanceled    = "canceled"
	ClassRejected    = "rejected_input"
	ClassNotFound    = "not_found"
	ClassOther       = "other"
)

// Classify names the class of a backend failure for counting and alerting:
// unavailable, deadline, bad_output, rejected_input (the request's input
// was refused: not the model's fault), not_found (no stored answer for the
// request), canceled (the client went away) or other.
func Classify(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ClassDeadline
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, ErrUnavailable):
		return ClassUnavailable
	case errors.Is(err, ErrBadOutput):
		return ClassBadOutput
	case errors.Is(err, ErrRejectedInput):
		return ClassRejected
	case errors.Is(err, ErrNotFound):
		return ClassNotFound
	}
	return ClassOther
}

// Health is implemented by backends whose availability changes while they
// are registered (a remote server); an arm whose backend is not healthy is
// not chosen. Backends without it are always healthy.
type Health interface {
	Healthy() bool
}
