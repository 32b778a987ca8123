package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		live, floor uint64
		want        int
	}{
		{"no reading yet", 0, 64 * mib, 100},
		{"tiny heap: capped", 1024, 64 * mib, maxPercent},
		{"2 MiB of roots, 64 MiB floor", 2 * mib, 64 * mib, 3200},
		{"32 MiB live", 32 * mib, 64 * mib, 200},
		{"at the floor", 64 * mib, 64 * mib, 100},
		{"above the floor: GOGC=100", 1024 * mib, 64 * mib, 100},
		{"just under the floor", 63 * mib, 64 * mib, 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percent(tc.live, tc.floor); got != tc.want {
				t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.floor, got, tc.want)
			}
		})
	}
}

// The tuner reads the real live heap and sets the real GC percent, and Run
// gives back the one it found.
func TestTunerSetsAndRestoresTheGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(77)
	defer debug.SetGCPercent(orig)
	runtime.GC()                // a live heap reading
	tu := New(1<<40, time.Hour) // a floor far above any live heap here
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tu.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// SetGCPercent returns the previous value: read it and put it back.
		p := debug.SetGCPercent(-2)
		debug.SetGCPercent(p)
		if p == maxPercent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d, want %d under a 1 TiB floor", p, maxPercent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if p := debug.SetGCPercent(orig); p != 77 {
		t.Errorf("GC percent after Run = %d, want the 77 it found", p)
	}
}
