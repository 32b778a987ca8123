package oip

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modelgate/modelgate/backend"
)

// ErrBadInput is wrapped by Predict's errors about the request itself: a
// malformed input tensor, K < 1, no candidates for a model whose scores are
// aligned with the candidates, or the server refusing the input
// (INVALID_ARGUMENT, HTTP 400). It is not the server's fault: these errors
// are *backend.InputError and match backend.ErrRejectedInput too.
var ErrBadInput = errors.New("oip: bad input")

// failure is the kind of a failed call, as the transports tell them apart.
type failure uint8

const (
	failOther         failure = iota
	failUnreachable           // no connection, gRPC UNAVAILABLE, HTTP 502/503
	failNotFound              // the model or version is not served: NOT_FOUND, HTTP 404
	failBusy                  // the server sheds load: RESOURCE_EXHAUSTED, HTTP 429
	failDeadline              // our deadline, or the server's (DEADLINE_EXCEEDED, HTTP 504)
	failCanceled              // the caller went away
	failRejected              // the server refused the input: INVALID_ARGUMENT, HTTP 400
	failUnimplemented         // the address does not serve the protocol
)

// callError is a failed call to the server: the call, its kind, and what
// the server (or the connection) said. It matches the backend's error
// classes: backend.ErrUnavailable, context.DeadlineExceeded,
// context.Canceled, backend.ErrRejectedInput (and ErrBadInput).
type callError struct {
	op   string // "ModelInfer", "POST /v2/models/ranker/infer", …
	kind failure
	msg  string
}

func (e *callError) Error() string { return "oip " + e.op + ": " + e.msg }

// Is matches the backend error class of the failure.
func (e *callError) Is(target error) bool {
	switch e.kind {
	case failUnreachable, failNotFound, failBusy, failUnimplemented:
		return target == backend.ErrUnavailable
	case failDeadline:
		return target == context.DeadlineExceeded
	case failCanceled:
		return target == context.Canceled
	case failRejected:
		return target == backend.ErrRejectedInput || target == ErrBadInput
	}
	return false
}

// contextFailure is the kind of a call whose context is done: the
// context's error decides (a transport error alone cannot tell our deadline
// from the caller's cancellation). ok is false while ctx is not done.
func contextFailure(ctx context.Context) (failure, bool) {
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return failDeadline, true
	case context.Canceled:
		return failCanceled, true
	}
	return failOther, false
}

// inferError is the error Predict returns for a failed inference call:
// a refused input is a *backend.InputError with the server's message (what
// the client should fix); a deadline says how long the call had.
func inferError(err error, budget time.Duration) error {
	var ce *callError
	if !errors.As(err, &ce) {
		return err
	}
	switch ce.kind {
	case failRejected:
		return fmt.Errorf("oip %s: %w", ce.op, &backend.InputError{Err: ErrBadInput, Msg: ce.msg})
	case failDeadline:
		return fmt.Errorf("%w (the call had %s)", err, budget.Round(time.Millisecond))
	}
	return err
}

// badOutput returns an error wrapping backend.ErrBadOutput.
func badOutput(format string, args ...any) error {
	return fmt.Errorf("oip infer: %w: %s", backend.ErrBadOutput, fmt.Sprintf(format, args...))
}

// badInput returns a *backend.InputError wrapping ErrBadInput.
func badInput(format string, args ...any) error {
	return backend.RejectInput(ErrBadInput, format, args...)
}
