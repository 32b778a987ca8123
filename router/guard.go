package router

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/registry"
)

// guardBuckets splits a guardrail window into this many slices.
const guardBuckets = 10

// Latency is kept in a log-linear histogram of microseconds: each power of
// two is split into latSub buckets, so a bucket's bounds are within 1/latSub
// (12.5%) of each other.
const (
	latSub     = 8
	latBuckets = 40 * latSub
)

type guardSlice struct {
	start int64 // slice start, unix nanos
	n     int
	errs  int
	lat   [latBuckets]uint32
}

// armGuard is one arm's sliding-window call statistics. Its lock is per
// arm and held only to add a sample or read the window.
type armGuard struct {
	mu      sync.Mutex
	slices  [guardBuckets]guardSlice
	tripped atomic.Int64 // when the guard last paused the arm (unix nanos), 0 if never
}

type guardKey struct{ endpoint, arm string }

func latBucket(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < latSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1))
	sub := (us >> (uint(e) - 3)) & (latSub - 1)
	b := e*latSub + int(sub) - 3*latSub + latSub // buckets 0..7 hold 0..7 µs exactly
	return min(b, latBuckets-1)
}

// latLower is the smallest latency bucket b holds.
func latLower(b int) time.Duration {
	if b < latSub {
		return time.Duration(b) * time.Microsecond
	}
	e := (b-latSub)/latSub + 3
	sub := uint64((b - latSub) % latSub)
	return time.Duration((uint64(1)<<uint(e))+sub<<(uint(e)-3)) * time.Microsecond
}

// add records one call and returns the window's calls, errors and a lower
// bound of its p99 latency (within 12.5%).
func (g *armGuard) add(now time.Time, window time.Duration, failed bool, lat time.Duration) (n, errs int, p99 time.Duration) {
	width := int64(window) / guardBuckets
	if width <= 0 {
		width = 1
	}
	t := now.UnixNano()
	start := t - t%width
	g.mu.Lock()
	defer g.mu.Unlock()
	sl := &g.slices[(start/width)%guardBuckets]
	if sl.start != start {
		*sl = guardSlice{start: start}
	}
	sl.n++
	if failed {
		sl.errs++
	}
	sl.lat[latBucket(lat)]++
	var hist [latBuckets]uint32
	for i := range g.slices {
		s := &g.slices[i]
		if s.n == 0 || t-s.start >= int64(window) {
			continue
		}
		n += s.n
		errs += s.errs
		for b, c := range s.lat {
			hist[b] += c
		}
	}
	need := (n*99 + 99) / 100 // the 99th percentile's rank, rounded up
	seen := 0
	for b, c := range hist {
		seen += int(c)
		if seen >= need {
			p99 = latLower(b)
			break
		}
	}
	return n, errs, p99
}

// guardrail records a backend call of arm and pauses the arm, once, when
// the endpoint's guardrails are breached.
func (r *Router) guardrail(ep *registry.Endpoint, arm string, failed bool, lat time.Duration) {
	g := ep.Policy.Guardrails
	if g == nil || g.Window.Std() <= 0 {
		return
	}
	window := g.Window.Std()
	v, ok := r.guards.Load(guardKey{ep.Name, arm})
	if !ok {
		v, _ = r.guards.LoadOrStore(guardKey{ep.Name, arm}, new(armGuard))
	}
	ag := v.(*armGuard)
	if ep.ArmStates[arm] == registry.Paused {
		return
	}
	// Until the endpoint changes after a trip (the pause landing, then a
	// resume), the guard stays tripped; a resumed arm is watched afresh.
	if at := ag.tripped.Load(); at != 0 {
		if ep.UpdatedAt.UnixNano() <= at {
			return
		}
		ag.mu.Lock()
		ag.slices = [guardBuckets]guardSlice{}
		ag.mu.Unlock()
		ag.tripped.CompareAndSwap(at, 0)
	}
	n, errs, p99 := ag.add(r.now(), window, failed, lat)
	if n < g.MinRequests {
		return
	}
	var reason string
	switch rate := float64(errs) / float64(n); {
	case g.MaxErrorRate > 0 && rate > g.MaxErrorRate:
		reason = fmt.Sprintf("error rate %.3f over the last %s (%d of %d calls) exceeds max_error_rate %.3f", rate, window, errs, n, g.MaxErrorRate)
	case g.MaxP99Ms > 0 && float64(p99)/float64(time.Millisecond) > g.MaxP99Ms:
		reason = fmt.Sprintf("p99 latency ≥ %s over the last %s (%d calls) exceeds max_p99_ms %g", p99, window, n, g.MaxP99Ms)
	default:
		return
	}
	at := r.now().UnixNano()
	if r.onTrip == nil || !ag.tripped.CompareAndSwap(0, at) {
		return
	}
	select {
	case r.trips <- trip{endpoint: ep.Name, arm: arm, reason: "paused by guardrail: " + reason}:
		r.log.Warn("guardrail pausing an arm", "endpoint", ep.Name, "arm", arm, "reason", reason)
	default:
		// Too many pauses at once: this one is tried again on the
		// arm's next call that still breaches.
		ag.tripped.CompareAndSwap(at, 0)
	}
}

// tripQueueLen bounds the guardrail pauses waiting to be applied.
const tripQueueLen = 64

// trip is a guardrail's decision to pause an arm.
type trip struct{ endpoint, arm, reason string }

// RunGuardrails applies the pauses that guardrails decide (Options.
// OnGuardrail), one at a time, off the request path, until ctx ends; then it
// applies those still queued and returns. Run it once, for as long as the
// router serves: without it no guardrail pauses an arm.
func (r *Router) RunGuardrails(ctx context.Context) {
	if r.onTrip == nil {
		return
	}
	for {
		select {
		case t := <-r.trips:
			r.onTrip(t.endpoint, t.arm, t.reason)
		case <-ctx.Done():
			for {
				select {
				case t := <-r.trips:
					r.onTrip(t.endpoint, t.arm, t.reason)
				default:
					return
				}
			}
		}
	}
}
