package loadtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 4 is the 2nd", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p50 of 5 is the 3rd", ms(1, 2, 3, 4, 5), 0.5, 3 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 100 is the 50th", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p100 is the max", ms(1, 2, 3), 1, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

// The open loop sends at most inflight calls at once, drops the sends due
// while every slot is busy, and counts failed calls apart.
func TestOpenLoopBoundsInFlight(t *testing.T) {
	block := func(ctx context.Context, _ int) error { <-ctx.Done(); return ctx.Err() }
	// 50 sends due over 1 s; the two sent block until their 3 s timeout.
	lat, failed, shed, dropped, err := OpenLoop(context.Background(), block, 50, time.Second, 3*time.Second, 2)
	if len(lat) != 0 || failed != 2 || shed != 0 || dropped != 48 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ok %d, failed %d, dropped %d, first error %v; want 0, 2, 48, deadline exceeded", len(lat), failed, dropped, err)
	}
}

func TestOpenLoopTimesEveryCall(t *testing.T) {
	calls := make(chan int, 100)
	ok := func(_ context.Context, i int) error { calls <- i; return nil }
	lat, failed, _, dropped, _ := OpenLoop(context.Background(), ok, 100, time.Second, time.Second, 100)
	close(calls)
	seen := map[int]bool{}
	for i := range calls {
		seen[i] = true
	}
	if len(lat) != 100 || failed != 0 || dropped != 0 || len(seen) != 100 {
		t.Errorf("ok %d, failed %d, dropped %d, distinct calls %d; want 100, 0, 0, 100", len(lat), failed, dropped, len(seen))
	}
	for i := 1; i < len(lat); i++ {
		if lat[i] < lat[i-1] || lat[i] <= 0 {
			t.Fatalf("latencies not sorted and positive: %v", lat)
		}
	}
}

// Calls the server shed are counted apart from failures, in both loops.
func TestLoopsCountShedApart(t *testing.T) {
	boom := errors.New("boom")
	mixed := func(_ context.Context, i int) error {
		switch i % 3 {
		case 0:
			return boom
		case 1:
			return fmt.Errorf("recommend: %w", ErrShed)
		}
		return nil
	}
	ok, failed, shed, took, err := ClosedLoop(context.Background(), mixed, 4, 100*time.Millisecond, time.Second)
	if ok == 0 || failed == 0 || shed == 0 || took <= 0 || !errors.Is(err, boom) {
		t.Errorf("closed loop: ok %d, failed %d, shed %d, took %v, error %v; want the counts positive and boom", ok, failed, shed, took, err)
	}
	lat, failed, shed, dropped, err := OpenLoop(context.Background(), mixed, 30, time.Second, time.Second, 30)
	if len(lat) != 10 || failed != 10 || shed != 10 || dropped != 0 || !errors.Is(err, boom) {
		t.Errorf("open loop: ok %d, failed %d, shed %d, dropped %d, error %v; want 10, 10, 10, 0, boom", len(lat), failed, shed, dropped, err)
	}
}
