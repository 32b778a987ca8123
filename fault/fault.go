// Package fault is the error type the core packages return for anything a
// caller must branch on: invalid input, unknown names, conflicts, an
// unavailable arm. The transports (package api) map a Kind to an HTTP or gRPC
// status; nothing else does.
package fault

import (
	"errors"
	"fmt"
)

// Kind classifies an Error. The zero value is Invalid.
type Kind uint8

// Kinds of errors, each with one HTTP status and one gRPC code in package api.
const (
	Invalid         Kind = iota // malformed or invalid input (400)
	NotFound                    // unknown endpoint, model or version (404)
	Conflict                    // the change conflicts with current state (409)
	TooLarge                    // the request body is too large (413)
	Unavailable                 // no arm could serve, or the store is down (503)
	Unauthenticated             // no valid API key (401)
	Forbidden                   // the key lacks the scope the call needs (403)
	RateLimited                 // the key is over its rate limit (429)
	Precondition                // If-Match names a revision no longer stored (412)
)

// Error is a classified error with a stable snake_case code, a human message
// and, when one field is at fault, its path (e.g. "events[2].type").
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Field   string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// New returns an Error of the given kind and code with a formatted message.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Field returns an Invalid error naming the field at fault.
func Field(field, code, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// As returns the *Error in err's chain, or nil.
func As(err error) *Error {
	if err == nil {
		return nil // without errors.As, whose target would escape to the heap
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
