package report

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/store"
)

// Requests served in the overflow segment show as a segments_capped
// warning with their number; without any, no warning.
func TestSegmentsCappedWarning(t *testing.T) {
	tb := &counters.Table{}
	ep := endpoint("surface")
	fill(tb, "surface=music", "mf@1", 10, 1)
	if r := Build(Input{Endpoint: ep, Table: tb, Segment: "all", Now: time.Now()}); hasWarning(r, "segments_capped") {
		t.Fatalf("no overflow, warnings %v", r.Health.Warnings)
	}
	fill(tb, counters.OtherSegment, "mf@1", 70, 7)
	fill(tb, counters.OtherSegment, "mf@2", 30, 3)
	for _, seg := range []string{"all", "surface=music", counters.OtherSegment} {
		r := Build(Input{Endpoint: ep, Table: tb, Segment: seg, Now: time.Now()})
		if !hasWarning(r, "segments_capped: 100 requests") {
			t.Fatalf("segment %s: warnings %v", seg, r.Health.Warnings)
		}
	}
}

// The "all" report reads the cells the router draws from. Counts left by an
// earlier segment_by setting stay in the table but are not the posterior the
// bandit uses now, so they are not in "all": the pre-segmentation "all"
// cells of an endpoint that became segmented, the segments of one that no
// longer is. Otherwise the report could declare a winner from evidence the
// policy ignores, beside traffic shares that show no such thing. A stale
// segment keeps its own report.
func TestAllAfterSegmentByChanged(t *testing.T) {
	type counts map[string][2]uint64 // arm -> trials, successes
	tests := []struct {
		name      string
		segmentBy []string
		cells     map[string]counts // segment -> its cells
		want      counts            // "all"
		status    string            // "all"'s decision
	}{
		{
			name:      "segment_by added",
			segmentBy: []string{"surface"},
			cells: map[string]counts{
				counters.AllSegment:   {"mf@1": {2000, 200}, "mf@2": {2000, 300}},
				"surface=music":       {"mf@1": {40, 4}, "mf@2": {30, 3}},
				"surface=news":        {"mf@1": {10, 2}},
				counters.OtherSegment: {"mf@2": {5, 1}},
			},
			want:   counts{"mf@1": {50, 6}, "mf@2": {35, 4}},
			status: "keep_running",
		},
		{
			name: "segment_by removed",
			cells: map[string]counts{
				counters.AllSegment: {"mf@1": {60, 6}, "mf@2": {50, 5}},
				"surface=music":     {"mf@1": {2000, 200}, "mf@2": {2000, 300}},
			},
			want:   counts{"mf@1": {60, 6}, "mf@2": {50, 5}},
			status: "keep_running",
		},
		{
			name:      "segmented throughout",
			segmentBy: []string{"surface"},
			cells: map[string]counts{
				"surface=music": {"mf@1": {1000, 100}, "mf@2": {1000, 150}},
				"surface=news":  {"mf@1": {1000, 100}, "mf@2": {1000, 150}},
			},
			want:   counts{"mf@1": {2000, 200}, "mf@2": {2000, 300}},
			status: "winner",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := &counters.Table{}
			ep := endpoint(tc.segmentBy...)
			for seg, cs := range tc.cells {
				for arm, c := range cs {
					fill(tb, seg, arm, c[0], c[1])
				}
			}
			// As the store's totals are loaded: the aggregate cells are
			// rebuilt from the segments.
			tb.Refresh(tb.Entries(ep.Name))
			view := counters.View(len(ep.Policy.SegmentBy) > 0, counters.AllSegment)
			for _, seg := range []string{"", counters.AllSegment} {
				r := Build(Input{Endpoint: ep, Table: tb, Segment: seg, Now: time.Now(), Draws: 2000})
				if r.Segment != counters.AllSegment {
					t.Errorf("segment %q reported as %q", seg, r.Segment)
				}
				for _, a := range r.Arms {
					if got := [2]uint64{a.Trials, uint64(a.Successes)}; got != tc.want[a.Arm] {
						t.Errorf("segment %q, %s: trials, successes %v, want %v", seg, a.Arm, got, tc.want[a.Arm])
					}
					// The router's cells hold the same counts.
					var cell [2]uint64
					if c := tb.Lookup(counters.Key{Endpoint: ep.Name, Segment: view, Arm: a.Arm}); c != nil {
						cell[0], cell[1], _ = c.Raw()
					}
					if cell != tc.want[a.Arm] {
						t.Errorf("%s: the router's %q cell holds %v, the report %v", a.Arm, view, cell, tc.want[a.Arm])
					}
				}
				if r.Decision.Status != tc.status {
					t.Errorf("segment %q: decision %s, want %s", seg, r.Decision.Status, tc.status)
				}
			}
			// A stale named segment is still reported on its own (the
			// stale "all" of a segmented endpoint cannot be: "all" is
			// the sum of its segments now).
			for seg, cs := range tc.cells {
				if seg == counters.AllSegment || counters.InView(view, seg) {
					continue
				}
				r := Build(Input{Endpoint: ep, Table: tb, Segment: seg, Now: time.Now(), Draws: 2000})
				for _, a := range r.Arms {
					if got := [2]uint64{a.Trials, uint64(a.Successes)}; got != cs[a.Arm] {
						t.Errorf("segment %q, %s: trials, successes %v, want %v", seg, a.Arm, got, cs[a.Arm])
					}
				}
			}
		})
	}
}

func hasWarning(r *Report, prefix string) bool {
	for _, w := range r.Health.Warnings {
		if strings.HasPrefix(w, prefix) {
			return true
		}
	}
	return false
}

type memSeries struct {
	batches [][]store.Record
	points  map[string]bool
}

func (m *memSeries) AddHistoryBatch(_ context.Context, recs []store.Record) (int, error) {
	m.batches = append(m.batches, recs)
	n := 0
	for _, r := range recs {
		k := fmt.Sprintf("%s/%s/%d", r.Endpoint, r.Segment, r.Time)
		if !m.points[k] {
			m.points[k] = true
			n++
		}
	}
	return n, nil
}

func (m *memSeries) History(context.Context, string, string, int64, int64) ([]store.Record, error) {
	return nil, nil
}

func (m *memSeries) PruneSeries(context.Context, int64, int64, int64) (int, error) { return 0, nil }

type endpoints []*registry.Endpoint

func (e endpoints) Endpoints() []*registry.Endpoint { return e }

// A tick writes one batch; it records every endpoint's "all" point and the
// segments whose counts changed, at most SegmentPointsPerTick of them, the
// least recently recorded first, and builds one report per point it writes.
func TestRecorderTick(t *testing.T) {
	tb := &counters.Table{}
	ep := endpoint("surface")
	const segs = SegmentPointsPerTick + 50
	for i := 0; i < segs; i++ {
		fill(tb, fmt.Sprintf("surface=s%03d", i), "mf@1", 10, 1)
	}
	series := &memSeries{points: map[string]bool{}}
	builds := 0
	build := func(in Input) *Report {
		builds++
		if in.Entries == nil || in.Segments == nil {
			t.Fatal("the recorder must hand the entries and segments it read")
		}
		in.Table = tb
		return Build(in)
	}
	rec := NewRecorder(endpoints{ep}, tb, series, build, time.Minute, time.Hour, RecorderOptions{})
	t0 := time.Unix(1_800_000_000, 0)
	tick := func(at time.Time) (segments map[string]bool) {
		builds = 0
		rec.RecordAll(context.Background(), at)
		last := series.batches[len(series.batches)-1]
		if builds != len(last) {
			t.Fatalf("%d reports built for %d points", builds, len(last))
		}
		segments = map[string]bool{}
		for _, r := range last {
			segments[r.Segment] = true
		}
		return segments
	}
	first := tick(t0)
	if len(series.batches) != 1 || !first["all"] || len(first) != SegmentPointsPerTick+1 {
		t.Fatalf("first tick: %d batches, %d points", len(series.batches), len(first))
	}
	// The next tick records the 50 left out, and nothing unchanged.
	second := tick(t0.Add(time.Minute))
	if len(second) != 51 || !second["all"] {
		t.Fatalf("second tick: %d points", len(second))
	}
	for s := range second {
		if s != "all" && first[s] {
			t.Fatalf("second tick re-recorded unchanged %s", s)
		}
	}
	// A segment that changes is recorded again.
	fill(tb, "surface=s000", "mf@2", 5, 1)
	third := tick(t0.Add(2 * time.Minute))
	if len(third) != 2 || !third["surface=s000"] {
		t.Fatalf("third tick: %v", third)
	}
}

// A history tick over many segments: one pass over the counters plus at
// most SegmentPointsPerTick segment reports, so its cost grows linearly
// (the counting), not quadratically, with the segments; compare the
// sub-benchmarks.
func BenchmarkRecordAll(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("segments=%d", n), func(b *testing.B) {
			tb := &counters.Table{}
			ep := endpoint("surface")
			for i := 0; i < n; i++ {
				fill(tb, fmt.Sprintf("surface=s%05d", i), "mf@1", 10, 1)
				fill(tb, fmt.Sprintf("surface=s%05d", i), "mf@2", 10, 2)
			}
			series := &memSeries{points: map[string]bool{}}
			build := func(in Input) *Report { in.Table = tb; return Build(in) }
			rec := NewRecorder(endpoints{ep}, tb, series, build, time.Minute, time.Hour, RecorderOptions{})
			t0 := time.Unix(1_800_000_000, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Every segment changed since the last tick: the worst case.
				b.StopTimer()
				for s := 0; s < n; s++ {
					fill(tb, fmt.Sprintf("surface=s%05d", s), "mf@1", 1, 0)
				}
				series.batches = series.batches[:0]
				b.StartTimer()
				rec.RecordAll(context.Background(), t0.Add(time.Duration(i)*time.Minute))
			}
		})
	}
}

// A report's posterior draws are common random numbers: the same counts
// give the same figures, look after look.
func TestReportIsReproducible(t *testing.T) {
	tb := &counters.Table{}
	ep := endpoint()
	fill(tb, "all", "mf@1", 300, 30)
	fill(tb, "all", "mf@2", 300, 36)
	a := Build(Input{Endpoint: ep, Table: tb, Segment: "all", Now: time.Now()})
	b := Build(Input{Endpoint: ep, Table: tb, Segment: "all", Now: time.Now()})
	for i := range a.Arms {
		if a.Arms[i].PBest != b.Arms[i].PBest || a.Arms[i].ExpectedLoss != b.Arms[i].ExpectedLoss || a.Arms[i].TrafficShare != b.Arms[i].TrafficShare {
			t.Fatalf("two reports of the same counts differ: %+v and %+v", a.Arms[i], b.Arms[i])
		}
	}
	if a.Decision.ValueRemaining != b.Decision.ValueRemaining {
		t.Fatalf("value remaining %v and %v", a.Decision.ValueRemaining, b.Decision.ValueRemaining)
	}
	if a.Arms[1].PBest < 0.6 || a.Arms[1].PBest > 0.9 {
		t.Fatalf("mf@2 P(best) %v: the draws are not plausible", a.Arms[1].PBest)
	}
}
