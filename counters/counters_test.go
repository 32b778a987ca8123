package counters

import (
	"fmt"
	"sync"
	"testing"
)

// Every trial counted while drains run concurrently reaches exactly one
// drain: none is lost, none is counted twice.
func TestDrainUnderConcurrency(t *testing.T) {
	var tb Table
	const workers, per = 8, 5000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := tb.Cell(Key{Endpoint: "e", Segment: fmt.Sprint("s", w%3), Arm: "a"})
			for i := 0; i < per; i++ {
				c.AddTrial()
			}
		}(w)
	}
	drained := uint64(0)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		d := tb.DrainPending()
		if len(d)%2 == 1 { // fail some flushes: their deltas go back
			tb.Restore(d)
			continue
		}
		for _, n := range d {
			drained += n
		}
	}
	for _, n := range tb.DrainPending() {
		drained += n
	}
	if drained != workers*per {
		t.Fatalf("drained %d trials, want %d", drained, workers*per)
	}
	var trials uint64
	for _, e := range tb.Entries("e") {
		trials += e.Trials
	}
	if trials != workers*per {
		t.Fatalf("counted %d trials, want %d", trials, workers*per)
	}
	if d := tb.DrainPending(); len(d) != 0 {
		t.Fatalf("pending after a full drain: %v", d)
	}
}

func TestRefreshKeepsLocalPending(t *testing.T) {
	var tb Table
	k := Key{Endpoint: "e", Segment: "s=1", Arm: "a"}
	c := tb.Cell(k)
	c.AddTrial() // counted here, not flushed yet
	// 7 clicks and 2.5 successes' worth of value rewards.
	tb.Refresh([]Entry{{Key: k, Trials: 100, Successes: 7, Reward: 5 * RewardUnit / 2}})
	if tr, su := c.Counts(); tr != 101 || su != 9.5 {
		t.Fatalf("after refresh: %d/%g, want 101/9.5", tr, su)
	}
	agg := tb.Lookup(Key{Endpoint: "e", Segment: AggregateSegment, Arm: "a"})
	if tr, su := agg.Counts(); tr != 101 || su != 9.5 {
		t.Fatalf("aggregate: %d/%g", tr, su)
	}
	if d := tb.DrainPending(); d[k] != 1 {
		t.Fatalf("pending after refresh: %v", d)
	}
}
