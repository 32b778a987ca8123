package remote

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Health is the health of one model version on a remote server: set by a
// background poll of the server and, between polls, by calls that find the
// server unavailable. The zero value is unhealthy ("no health check has
// succeeded yet") and polls nothing; Start starts the poll and Stop ends
// it. Healthy and Err are safe for concurrent use.
type Health struct {
	healthy atomic.Bool
	lastErr atomic.Pointer[error]
	cancel  context.CancelFunc
	done    chan struct{}
}

// errNoCheck is why a version is unhealthy before any check.
var errNoCheck = errors.New("no health check has succeeded yet")

// Healthy reports whether the last check succeeded. It is cheap (one
// atomic load).
func (h *Health) Healthy() bool { return h.healthy.Load() }

// Err is why the version is unhealthy, nil when it is healthy.
func (h *Health) Err() error {
	if h.healthy.Load() {
		return nil
	}
	if p := h.lastErr.Load(); p != nil {
		return *p
	}
	return errNoCheck
}

// Set records a check's result: healthy when err is nil.
func (h *Health) Set(err error) {
	if err != nil {
		h.lastErr.Store(&err)
	}
	h.healthy.Store(err == nil)
}

// Start runs check every interval (at once too, when now is set) in a
// goroutine that Stop ends, and records each result. Each check's context
// has a deadline of interval or timeout, whichever is shorter; a check cut
// short by Stop records nothing. Start is called at most once.
func (h *Health) Start(interval, timeout time.Duration, now bool, check func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	poll := func() {
		cctx, cancel := context.WithTimeout(ctx, min(interval, timeout))
		defer cancel()
		err := check(cctx)
		if ctx.Err() != nil && err != nil {
			return // stopping
		}
		h.Set(err)
	}
	go func() {
		defer close(h.done)
		if now {
			poll()
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				poll()
			}
		}
	}()
}

// Stop ends the poll Start started, waits for it, and marks the version
// unhealthy. It is a no-op when there is no poll; call it once.
func (h *Health) Stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
	}
	h.healthy.Store(false)
}
