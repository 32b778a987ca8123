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
