// Package api is the gateway's transports: HTTP/JSON on gin and gRPC. Both
// are thin over the same core (router, registry, feedback, report); errors
// are mapped to statuses here and nowhere else.
package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/fault"
)

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of an ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func kindStatus(k fault.Kind) int {
	switch k {
	case fault.NotFound:
		return http.StatusNotFound
	case fault.Conflict:
		return http.StatusConflict
	case fault.TooLarge:
		return http.StatusRequestEntityTooLarge
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	case fault.Unauthenticated:
		return http.StatusUnauthorized
	case fault.Forbidden:
		return http.StatusForbidden
	case fault.RateLimited:
		return http.StatusTooManyRequests
	case fault.Precondition:
		return http.StatusPreconditionFailed
	}
	return http.StatusBadRequest
}

func kindCode(k fault.Kind) codes.Code {
	switch k {
	case fault.NotFound:
		return codes.NotFound
	case fault.Conflict:
		return codes.AlreadyExists
	case fault.TooLarge:
		return codes.ResourceExhausted
	case fault.Unavailable:
		return codes.Unavailable
	case fault.Unauthenticated:
		return codes.Unauthenticated
	case fault.Forbidden:
		return codes.PermissionDenied
	case fault.RateLimited:
		return codes.ResourceExhausted
	case fault.Precondition:
		return codes.FailedPrecondition
	}
	return codes.InvalidArgument
}

// classify turns any error into a status and body. Unclassified errors are
// internal: their text is not shown to the client. The field at fault is
// named by Field alone, not again in Message.
func classify(err error) (int, ErrorDetail) {
	if f := fault.As(err); f != nil {
		msg := f.Message
		if f.Err != nil {
			msg += ": " + f.Err.Error()
		}
		return kindStatus(f.Kind), ErrorDetail{Code: f.Code, Message: msg, Field: f.Field}
	}
	if errors.Is(err, context.Canceled) {
		return 499, ErrorDetail{Code: "canceled", Message: "the client went away"}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, ErrorDetail{Code: "deadline_exceeded", Message: "the request's deadline passed"}
	}
	return http.StatusInternalServerError, ErrorDetail{Code: "internal", Message: "internal error"}
}

func (s *Server) writeError(c *gin.Context, err error) {
	st, d := classify(err)
	if st == http.StatusInternalServerError {
		s.log.Error("internal error", "path", c.FullPath(), "err", err)
	}
	if st == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	if d, ok := retryOf(err); ok {
		c.Header("Retry-After", strconv.Itoa(retrySeconds(d)))
	}
	c.AbortWithStatusJSON(st, ErrorBody{Error: d})
}

// grpcError maps an error to a gRPC status error whose text is
// "code: field: message" (the field, when one is at fault, named once).
func grpcError(err error) error {
	if f := fault.As(err); f != nil {
		msg := f.Message
		if f.Field != "" {
			msg = f.Field + ": " + msg
		}
		return status.Error(kindCode(f.Kind), f.Code+": "+msg)
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "the client went away")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	}
	return status.Error(codes.Internal, "internal error")
}

// deadlineSlack is how close to its deadline a cancelled call counts as
// one whose deadline passed: a client resets the stream when its own timer
// fires, a moment before the server's copy of the deadline (the client's
// timeout counted from the request's arrival) passes.
const deadlineSlack = 50 * time.Millisecond

// grpcCallError is grpcError for the error of a call whose context may have
// ended: once the client's deadline has passed or the client cancelled, the
// call ends DeadlineExceeded or Canceled, whatever failed on the way (a
// backend call cut short, a fallback that had no time left).
func grpcCallError(ctx context.Context, err error) error {
	switch ctx.Err() {
	case nil:
		return grpcError(err)
	case context.DeadlineExceeded:
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < deadlineSlack {
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	}
	return status.Error(codes.Canceled, "the client went away")
}
