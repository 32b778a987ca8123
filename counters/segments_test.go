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
	for _, s := range []string{AllSegment, OtherSegment, AggregateSegment, HoldoutSegment} {
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
	tb.Cell(Key{Endpoint: "f", Segment: HoldoutSegment, Arm: "a"})
	if !tb.Known("f", "k=v") || tb.SegmentCount("f") != 1 || tb.Known("f", "k=w") || tb.Admit("f", "k=w", 1) {
		t.Fatalf("cells: known %v, count %d", tb.Known("f", "k=v"), tb.SegmentCount("f"))
	}
	if got := tb.Segments("f"); len(got) != 1 || got[0] != "k=v" {
		t.Fatalf("segments of f: %v", got)
	}
}

func TestInAggregate(t *testing.T) {
	tests := []struct {
		segment string
		want    bool
	}{
		{AllSegment, false},
		{AggregateSegment, false},
		{HoldoutSegment, false},
		{OtherSegment, true},
		{"surface=music", true},
		{"surface=music,country=de", true},
		{"surface=", true},
	}
	for _, tc := range tests {
		if got := InAggregate(tc.segment); got != tc.want {
			t.Errorf("InAggregate(%q) = %v, want %v", tc.segment, got, tc.want)
		}
	}
}

// The aggregate kept up as counts arrive (AddToAggregate) is the aggregate
// Refresh rebuilds from the segments: the two follow one rule.
func TestAggregateAddedEqualsRebuilt(t *testing.T) {
	counts := []struct {
		key               Key
		trials, successes uint64
	}{
		{Key{"seg", "surface=music", "a"}, 5, 2},
		{Key{"seg", "surface=video", "a"}, 3, 1},
		{Key{"seg", "surface=video", "b"}, 7, 0},
		{Key{"seg", OtherSegment, "b"}, 4, 4},
		// The holdout's counts are not the bandit's.
		{Key{"seg", HoldoutSegment, "a"}, 20, 10},
		{Key{"plain", HoldoutSegment, "a"}, 20, 10},
		// An endpoint whose segment_by was added after it served unsegmented:
		// its "all" cells are not part of the aggregate.
		{Key{"seg", AllSegment, "a"}, 100, 50},
		{Key{"plain", AllSegment, "a"}, 9, 3},
	}
	var tb Table
	for _, c := range counts {
		tb.Cell(c.key).AddDurable(c.trials, c.successes, 0)
		tb.AddToAggregate(c.key, c.trials, c.successes, 0)
	}
	want := map[Key][2]uint64{
		{"seg", AggregateSegment, "a"}: {8, 3},
		{"seg", AggregateSegment, "b"}: {11, 4},
	}
	check := func(when string) {
		t.Helper()
		for k, w := range want {
			c := tb.Lookup(k)
			if c == nil {
				t.Fatalf("%s: no cell %v", when, k)
			}
			if tr, su, _ := c.Raw(); tr != w[0] || su != w[1] {
				t.Errorf("%s: %v = (%d, %d), want (%d, %d)", when, k, tr, su, w[0], w[1])
			}
		}
		if c := tb.Lookup(Key{"plain", AggregateSegment, "a"}); c != nil {
			t.Errorf("%s: an endpoint without segments has an aggregate cell", when)
		}
	}
	check("added")
	tb.Refresh(nil)
	check("rebuilt")
}

// The view of "all" on a segmented endpoint is the aggregate; every other
// view is the segment itself.
func TestView(t *testing.T) {
	tests := []struct {
		segmented bool
		segment   string
		want      string
	}{
		{false, "", AllSegment},
		{false, AllSegment, AllSegment},
		{false, "surface=music", "surface=music"},
		{true, "", AggregateSegment},
		{true, AllSegment, AggregateSegment},
		{true, "surface=music", "surface=music"},
		{true, OtherSegment, OtherSegment},
	}
	for _, tc := range tests {
		if got := View(tc.segmented, tc.segment); got != tc.want {
			t.Errorf("View(%v, %q) = %q, want %q", tc.segmented, tc.segment, got, tc.want)
		}
	}
}

// A view holds the cells its counts are read from: the aggregate's are the
// segments InAggregate names, never the stale "all" cells of an endpoint
// that became segmented nor the aggregate cells themselves.
func TestInView(t *testing.T) {
	tests := []struct {
		view, segment string
		want          bool
	}{
		{AggregateSegment, "surface=music", true},
		{AggregateSegment, OtherSegment, true},
		{AggregateSegment, AllSegment, false},
		{AggregateSegment, AggregateSegment, false},
		{AggregateSegment, HoldoutSegment, false},
		{AllSegment, AllSegment, true},
		{AllSegment, HoldoutSegment, false},
		{AllSegment, "surface=music", false},
		{AllSegment, OtherSegment, false},
		{AllSegment, AggregateSegment, false},
		{"surface=music", "surface=music", true},
		{"surface=music", "surface=news", false},
		{"surface=music", AggregateSegment, false},
	}
	for _, tc := range tests {
		if got := InView(tc.view, tc.segment); got != tc.want {
			t.Errorf("InView(%q, %q) = %v, want %v", tc.view, tc.segment, got, tc.want)
		}
	}
}
