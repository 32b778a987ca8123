package remote

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/testenv"
)

func TestHealth(t *testing.T) {
	var h Health
	if h.Healthy() || h.Err() == nil {
		t.Fatal("the zero Health is healthy")
	}
	var fail atomic.Bool
	var calls atomic.Int32
	down := errors.New("down")
	h.Start(5*time.Millisecond, time.Second, true, func(ctx context.Context) error {
		calls.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a check without a deadline")
		}
		if fail.Load() {
			return down
		}
		return nil
	})
	wait := func(want bool) {
		t.Helper()
		testenv.WaitFor(t, 5*time.Second, func() bool { return h.Healthy() == want })
	}
	wait(true)
	fail.Store(true)
	wait(false)
	if !errors.Is(h.Err(), down) {
		t.Fatalf("Err = %v", h.Err())
	}
	fail.Store(false)
	wait(true)
	h.Set(down) // a call found the server down
	if h.Healthy() {
		t.Fatal("Set(err) leaves it healthy")
	}
	h.Stop()
	n := calls.Load()
	time.Sleep(20 * time.Millisecond)
	if calls.Load() != n || h.Healthy() {
		t.Fatal("the poll goes on after Stop")
	}
}
