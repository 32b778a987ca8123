package tfserving

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/backend"
)

// ErrDeadline is wrapped by Predict's errors when the call's deadline passed
// before TF Serving answered (Config.Timeout, the caller's deadline, or the
// server's own). errors.Is(err, context.DeadlineExceeded) holds for it too,
// so backend.Classify counts it as a deadline.
var ErrDeadline error = deadlineError{}

type deadlineError struct{}

func (deadlineError) Error() string { return "tfserving: deadline exceeded" }

// Is makes ErrDeadline match context.DeadlineExceeded.
func (deadlineError) Is(target error) bool { return target == context.DeadlineExceeded }

// ErrBadInput is wrapped by Predict's errors about the request itself: a
// malformed input tensor, K < 1, no candidates for a model whose scores
// are aligned with the candidates, or TF Serving answering
// INVALID_ARGUMENT. It is not the server's fault: these errors are
// *backend.InputError and match backend.ErrRejectedInput too.
var ErrBadInput = errors.New("tfserving: bad input")

// Classify names the class of a Predict error, as backend.Classify does:
// "deadline", "canceled" (the caller went away), "unavailable",
// "bad_output", "rejected_input" or "other". It also classifies a bare gRPC
// status error.
func Classify(err error) string {
	if err == nil {
		return backend.ClassOther
	}
	if c := backend.Classify(err); c != backend.ClassOther {
		return c
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.DeadlineExceeded:
			return backend.ClassDeadline
		case codes.Canceled:
			return backend.ClassCanceled
		case codes.Unavailable, codes.NotFound, codes.ResourceExhausted:
			return backend.ClassUnavailable
		case codes.InvalidArgument:
			return backend.ClassRejected
		}
	}
	return backend.ClassOther
}

// callError turns a failed call into an error the router can classify. ctx is
// the call's own context: when it is done, its error decides (a gRPC status
// alone cannot tell our deadline from the caller's cancellation).
func callError(ctx context.Context, op string, timeout time.Duration, err error) error {
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return fmt.Errorf("tfserving %s: %w (no answer within %s)", op, ErrDeadline, timeout.Round(time.Millisecond))
	case context.Canceled:
		return fmt.Errorf("tfserving %s: %w", op, context.Canceled)
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Errorf("tfserving %s: %w (server: %s)", op, ErrDeadline, st.Message())
	case codes.Unavailable, codes.NotFound, codes.ResourceExhausted, codes.Canceled:
		// NotFound: the model or version is not loaded. ResourceExhausted:
		// the server sheds load. Canceled without our context being done:
		// the connection is closing.
		return fmt.Errorf("tfserving %s: %w: %s: %s", op, backend.ErrUnavailable, st.Code(), st.Message())
	case codes.InvalidArgument:
		// The server refused the tensors this request made (a shape, a
		// dtype, an id out of an embedding's range): the request's fault,
		// and the server's message says what to fix.
		return fmt.Errorf("tfserving %s: %w", op, &backend.InputError{Err: ErrBadInput, Msg: st.Message()})
	}
	return fmt.Errorf("tfserving %s: %s: %s", op, st.Code(), st.Message())
}

// badOutput returns an error wrapping backend.ErrBadOutput.
func badOutput(format string, args ...any) error {
	return fmt.Errorf("tfserving predict: %w: %s", backend.ErrBadOutput, fmt.Sprintf(format, args...))
}

// badInput returns a *backend.InputError wrapping ErrBadInput.
func badInput(format string, args ...any) error {
	return backend.RejectInput(ErrBadInput, format, args...)
}
