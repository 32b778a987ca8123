package counters

import (
	"fmt"
	"sync"
	"testing"
)

// Admit holds the cap exactly under concurrent admissions; segments that
// do not count (all, other, the aggregate) are always admitted; cells
// created for a segment make it known.
func TestAdmit(t *testing.T) {
	var tb Table
	const max = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if tb.Admit("e", fmt.Sprintf("k=%d-%d", w, i), max) {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	if admitted != max || tb.SegmentCount("e") != max {
		t.Fatalf("admitted %d, count %d, want %d", admitted, tb.SegmentCount("e"), max)
	}
	for _, s := range []string{AllSegment, OtherSegment, AggregateSegment} {
		if !tb.Admit("e", s, max) {
			t.Fatalf("%s refused", s)
		}
	}
	if tb.SegmentCount("e") != max {
		t.Fatalf("uncounted segments changed the count to %d", tb.SegmentCount("e"))
	}
	tb.Cell(Key{Endpoint: "f", Segment: "k=v", Arm: "a"})
	tb.Cell(Key{Endpoint: "f", Segment: "k=v", Arm: "b"})
	tb.Cell(Key{Endpoint: "f", Segment: AggregateSegment, Arm: "a"})
	if !tb.Known("f", "k=v") || tb.SegmentCount("f") != 1 || tb.Known("f", "k=w") || tb.Admit("f", "k=w", 1) {
		t.Fatalf("cells: known %v, count %d", tb.Known("f", "k=v"), tb.SegmentCount("f"))
	}
	if got := tb.Segments("f"); len(got) != 1 || got[0] != "k=v" {
		t.Fatalf("segments of f: %v", got)
	}
}
