// Package loadtest drives load at a server from Go: an open loop that sends
// at a fixed rate and times each call from the moment it was due, and a
// closed loop of workers calling back to back. The load tools under tools/
// use it; every run is bounded in time by its caller.
package loadtest

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Call makes the i-th call of a path; it returns when the answer has been
// read in full. An error wrapping ErrShed is a call the server refused as
// overloaded.
type Call func(ctx context.Context, i int) error

// ErrShed marks a call the server refused as overloaded (the gateway's
// limits.max_concurrent): counted apart from failures, as a number, not an
// error of the run.
var ErrShed = errors.New("shed: the server is overloaded")

// OpenLoop sends calls at rate per second for d. One goroutine, locked to
// its OS thread, paces the sends; each call runs on its own goroutine and is
// timed from the moment it was due, so a stall shows in the latencies
// instead of slowing the sender. At most inflight calls run at once: a send
// due while all are busy is dropped and counted. Every call has timeout.
// It returns the sorted latencies of the calls that succeeded.
func OpenLoop(ctx context.Context, c Call, rate int, d, timeout time.Duration, inflight int) (lat []time.Duration, failed, shed, dropped int, firstErr error) {
	n := int(int64(rate) * int64(d) / int64(time.Second))
	lats := make([]time.Duration, n)
	errs := make([]error, n)
	sent := make([]bool, n)
	slots := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	paced := make(chan struct{})
	go func() { // the pacer; joined through paced
		defer close(paced)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		for i := range n {
			due := start.Add(time.Duration(i) * interval)
			if w := time.Until(due); w > 0 {
				time.Sleep(w)
			}
			if ctx.Err() != nil {
				return
			}
			select {
			case slots <- struct{}{}:
			default:
				continue // every slot busy: dropped, never queued behind
			}
			sent[i] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				cctx, cancel := context.WithTimeout(ctx, timeout)
				errs[i] = c(cctx, i)
				cancel()
				lats[i] = time.Since(due)
			}()
		}
	}()
	<-paced
	wg.Wait()
	lat = lats[:0:0]
	for i := range n {
		switch {
		case !sent[i]:
			dropped++
		case errors.Is(errs[i], ErrShed):
			shed++
		case errs[i] != nil:
			failed++
			if firstErr == nil {
				firstErr = errs[i]
			}
		default:
			lat = append(lat, lats[i])
		}
	}
	return sortLatencies(lat), failed, shed, dropped, firstErr
}

// ClosedLoop runs workers goroutines, each calling back to back, for d,
// and returns the calls completed, failed and shed and the time taken.
func ClosedLoop(ctx context.Context, c Call, workers int, d, timeout time.Duration) (ok, failed, shed int, took time.Duration, firstErr error) {
	var nOK, nFailed, nShed, seq atomic.Int64
	var errOnce sync.Once
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				err := c(cctx, int(seq.Add(1)))
				cancel()
				if errors.Is(err, ErrShed) {
					nShed.Add(1)
					continue
				}
				if err != nil {
					nFailed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				nOK.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(nOK.Load()), int(nFailed.Load()), int(nShed.Load()), time.Since(start), firstErr
}

// Percentile returns the p-quantile (0 < p <= 1) of sorted by the nearest
// rank: the smallest value with at least p of the values at or below it.
// Zero for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

// sortLatencies sorts in place and returns its argument.
func sortLatencies(d []time.Duration) []time.Duration { slices.Sort(d); return d }
