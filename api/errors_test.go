package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/modelgate/modelgate/fault"
)

// Every error maps to a documented status; only an unclassified one is a
// 500, and its text is not shown.
func TestClassify(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{fault.Field("k", "invalid_k", "bad"), http.StatusBadRequest, "invalid_k"},
		{fault.New(fault.NotFound, "endpoint_not_found", "no"), http.StatusNotFound, "endpoint_not_found"},
		{fault.New(fault.Precondition, "precondition_failed", "stale"), http.StatusPreconditionFailed, "precondition_failed"},
		{fmt.Errorf("recommend: %w", context.Canceled), 499, "canceled"},
		{fmt.Errorf("recommend: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, "deadline_exceeded"},
		{errors.New("disk on fire"), http.StatusInternalServerError, "internal"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			st, d := classify(tc.err)
			if st != tc.status || d.Code != tc.code {
				t.Fatalf("classify(%v) = %d %s, want %d %s", tc.err, st, d.Code, tc.status, tc.code)
			}
			if st == http.StatusInternalServerError && d.Message != "internal error" {
				t.Fatalf("an internal error shows %q", d.Message)
			}
		})
	}
}
