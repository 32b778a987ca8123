// Package backend holds the types shared by the model runtimes (embedded,
// TF Serving, …) and the router that calls them.
package backend

import (
	"context"
	"errors"

	"github.com/modelgate/modelgate/featurizer"
)

// Request is one scoring call. Inputs are the featurizer's tensors for the
// version's spec. Candidates, when non-nil, is the only set of items that may
// be returned (excluded items already removed); Exclude lists items that must
// never be returned. K is the number of items wanted (1..1000).
type Request struct {
	Inputs     []featurizer.Tensor
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
	// ErrBadOutput: the backend answered with outputs of the wrong shape or dtype.
	ErrBadOutput = errors.New("backend returned bad output")
)

// Error classes, as Classify names them.
const (
	ClassUnavailable = "unavailable"
	ClassDeadline    = "deadline"
	ClassBadOutput   = "bad_output"
	ClassCanceled    = "canceled"
	ClassOther       = "other"
)

// Classify names the class of a backend failure for counting and alerting:
// unavailable, deadline, bad_output, canceled (the client went away) or other.
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
	}
	return ClassOther
}

// Health is implemented by backends whose availability changes while they
// are registered (a remote server); an arm whose backend is not healthy is
// not chosen. Backends without it are always healthy.
type Health interface {
	Healthy() bool
}
