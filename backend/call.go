package backend

import (
	"context"
	"time"
)

// CheckRequest makes the checks every remote backend makes before calling
// its server: K of at least 1, and, for a model that scores the request's
// candidates (candidatesAligned), candidates. Refusals are *InputError
// values with the backend's sentinel, naming model. done is true when the
// backend must answer items, err without calling its server: a refusal, or
// nothing to score (an empty candidate list: no items).
func CheckRequest(req *Request, candidatesAligned bool, sentinel error, model string) (items []Item, done bool, err error) {
	if req.K < 1 {
		return nil, true, RejectInput(sentinel, "k = %d, want at least 1", req.K)
	}
	if candidatesAligned && len(req.Candidates) == 0 {
		if req.Candidates == nil {
			return nil, true, RejectInput(sentinel, "model %q scores the request's candidates, but the request has none", model)
		}
		return []Item{}, true, nil
	}
	return nil, false, nil
}

// CallContext bounds a call to a model server by timeout, unless ctx's own
// deadline comes first. It returns the call's context, the function that
// releases it (call it when the call is done) and the time the call has.
func CallContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc, time.Duration) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= timeout {
		return ctx, func() {}, time.Until(dl) // the caller's deadline comes first
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, timeout
}
