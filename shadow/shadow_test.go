package shadow

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/store"
)

// What the report says of a shadow follows from its calls and clicks,
// worked by hand, before and after the sums are flushed, and after a
// restart on the same store.
func TestSummaries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := New(db, nil)
	exp := time.Now().Add(time.Hour)
	served := []string{"a", "b", "c", "d"}
	// p1: the shadow agrees on 2 of 4 (overlap 0.5), in 4 ms; mf@4 fails.
	rec.Done(ctx, &Prediction{Endpoint: "home", Key: "p1", Expires: exp, Served: served, Calls: []Call{
		{Arm: "mf@3", Items: []string{"a", "c", "x", "y"}, Latency: 4 * time.Millisecond},
		{Arm: "mf@4", Err: errors.New("deadline"), Latency: 20 * time.Millisecond}}})
	// p2: it agrees on all 4 (overlap 1), in 4 ms.
	rec.Done(ctx, &Prediction{Endpoint: "home", Key: "p2", Expires: exp, Served: served, Calls: []Call{
		{Arm: "mf@3", Items: []string{"d", "c", "b", "a"}, Latency: 4 * time.Millisecond}}})
	rec.Dropped("home", []string{"mf@3", "mf@4"})
	// Clicks: p1 on "x" (the shadow's, not served), p2 on "b" (both's);
	// a click on a prediction whose lists are not kept replays nothing.
	rec.Clicked(ctx, "home", "p1", exp, "x")
	rec.Clicked(ctx, "home", "p2", exp, "b")
	rec.Clicked(ctx, "home", "p9", exp, "b")

	shadows := []registry.Shadow{{Arm: "mf@3", Share: 0.5}, {Arm: "mf@4", Share: 1}, {Arm: "mf@5", Share: 0.1}}
	check := func(when string, got []Summary) {
		t.Helper()
		if len(got) != 3 {
			t.Fatalf("%s: %d summaries", when, len(got))
		}
		s3, s4, s5 := got[0], got[1], got[2]
		if s3.Arm != "mf@3" || s3.Share != 0.5 || s3.Calls != 2 || s3.Errors != 0 || s3.Dropped != 1 {
			t.Fatalf("%s: mf@3 %+v", when, s3)
		}
		if s3.OverlapAtK == nil || math.Abs(*s3.OverlapAtK-0.75) > 1e-9 {
			t.Fatalf("%s: overlap %v, want 0.75", when, s3.OverlapAtK)
		}
		// Both answers in the (3, 5] ms bucket: interpolated p50 at 4 ms.
		if s3.LatencyMs == nil || math.Abs(s3.LatencyMs.P50-4) > 1e-9 || s3.LatencyMs.P99 <= 4 || s3.LatencyMs.P99 > 5 {
			t.Fatalf("%s: latency %+v", when, s3.LatencyMs)
		}
		if s3.Replay.N != 2 || *s3.Replay.Rate != 1 || s3.ServedReplay.N != 2 || *s3.ServedReplay.Rate != 0.5 {
			t.Fatalf("%s: replay %+v served %+v", when, s3.Replay, s3.ServedReplay)
		}
		if ci := s3.ServedReplay.CI95; ci == nil || !(ci[0] < 0.5 && ci[1] > 0.5 && ci[0] >= 0 && ci[1] <= 1) {
			t.Fatalf("%s: served replay interval %v", when, ci)
		}
		if s4.Calls != 1 || s4.Errors != 1 || s4.Dropped != 1 || s4.LatencyMs != nil || s4.OverlapAtK != nil || s4.Replay.N != 0 || s4.Replay.Rate != nil {
			t.Fatalf("%s: mf@4 %+v", when, s4)
		}
		if s5.Calls != 0 || s5.Replay.N != 0 || s5.LatencyMs != nil {
			t.Fatalf("%s: mf@5 %+v", when, s5)
		}
	}
	got, err := rec.Summaries(ctx, "home", shadows)
	if err != nil {
		t.Fatal(err)
	}
	check("pending", got)
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = rec.Summaries(ctx, "home", shadows)
	check("flushed", got)
	db.Close()
	db, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	again := New(db, nil)
	got, _ = again.Summaries(ctx, "home", shadows)
	check("reopened", got)
	// The flushed lists are read back from the store for a click that
	// reaches another process (here: p1 clicked again as if first, on "a").
	again.Clicked(ctx, "home", "p1", exp, "a")
	got, _ = again.Summaries(ctx, "home", shadows)
	if r := got[0].Replay; r.N != 3 || *r.Rate != 1 {
		t.Fatalf("replay from the store: %+v", r)
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		counts map[int]int64
		q      float64
		want   float64
	}{
		{"one bucket, half", map[int]int64{0: 4}, 0.5, 0.125},
		{"second bucket", map[int]int64{0: 1, 1: 1}, 1, 0.5},
		{"open bucket", map[int]int64{len(latencyBounds): 3}, 0.5, 10000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := make([]int64, len(latencyBounds)+1)
			for i, n := range tc.counts {
				c[i] = n
			}
			if got, ok := percentile(c, tc.q); !ok || math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("got %v %v, want %v", got, ok, tc.want)
			}
		})
	}
	if _, ok := percentile(make([]int64, 3), 0.5); ok {
		t.Fatal("an empty histogram has a percentile")
	}
}
