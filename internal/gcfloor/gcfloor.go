// Package gcfloor gives the Go garbage collector a heap floor: while the
// live heap is small, the collector lets the heap grow to at least the
// live heap plus a floor before it runs, instead of to twice the live heap
// (GOGC=100).
//
// A gateway's live heap is a few MiB when its models are remote, and it
// allocates some 10 KiB per request, so with GOGC=100 it collects several
// times a second at 1,000 requests per second; every cycle stops the world
// twice and takes a quarter of the CPU for a few milliseconds, which the
// requests it overlaps pay as tail latency. With a floor of 32 MiB it
// collects every few seconds, for about that much more memory. Once the
// live heap is above the floor (large embedded models), GOGC=100 applies
// unchanged, so memory stays proportional to the live heap.
package gcfloor

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultFloor is the heap growth allowed above the live heap before a
// collection, while the live heap is smaller than that.
const DefaultFloor = 32 << 20

// maxPercent bounds the GC percent the floor sets (a tiny live heap would
// otherwise ask for an absurd one).
const maxPercent = 5000

// Percent is the GC percent that lets the heap grow by about
// max(roots, floor) above the live heap, where roots is the live heap plus
// the goroutine stacks and globals the collector scans (the base GOGC
// applies to since Go 1.18): 100 when roots ≥ floor, more below it, at
// most maxPercent.
func Percent(roots, floor uint64) int {
	if roots == 0 || roots >= floor {
		return 100
	}
	p := floor * 100 / roots
	return int(min(max(p, 100), maxPercent))
}

// Tuner sets the GC percent from the live heap. Create it with New; Run
// it in one goroutine.
type Tuner struct {
	floor  uint64
	every  time.Duration
	sample []metrics.Sample
	set    func(int) int // debug.SetGCPercent
	last   int
}

// New returns a tuner for floor bytes, checking the live heap every
// interval.
func New(floor uint64, every time.Duration) *Tuner {
	return &Tuner{floor: floor, every: every, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}},
		set: debug.SetGCPercent, last: -1}
}

// Run tunes until ctx ends, then restores the GC percent it found.
func (t *Tuner) Run(ctx context.Context) {
	orig := t.set(100)
	t.set(orig)
	defer t.set(orig)
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		t.Tune()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Tune sets the GC percent for the live heap now; it returns the percent.
func (t *Tuner) Tune() int {
	metrics.Read(t.sample)
	var roots uint64
	for _, s := range t.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			roots += s.Value.Uint64()
		}
	}
	p := Percent(roots, t.floor)
	if p != t.last {
		t.set(p)
		t.last = p
	}
	return p
}
