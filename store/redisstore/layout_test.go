package redisstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
)

// TestMigratesFirstLayout writes a database in the first layout (global
// counter hashes, dedupe keys, batch records and history series), starts
// several stores on it at once, as replicas of a rolling start do, and
// checks that the counts are exactly what they were, once, in the
// per-endpoint keys; that the old keys are gone; that an event, a
// success and a batch recorded in the first layout still count as seen;
// and that a store started later finds nothing left to move.
func TestMigratesFirstLayout(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	raw := rawClient(t, srv)
	const big = uint64(1)<<62 + 7 // beyond a Lua number's exact range
	want := map[counters.Key][2]uint64{}
	for e := range 5 {
		for a := range 40 {
			k := counters.Key{Endpoint: fmt.Sprintf("ep%d", e), Segment: "all", Arm: fmt.Sprintf("m@%d", a)}
			want[k] = [2]uint64{big + uint64(a), uint64(e*a + 1)}
			raw.HSet(ctx, DefaultPrefix+"counters:trials", k.Encode(), want[k][0])
			raw.HSet(ctx, DefaultPrefix+"counters:successes", k.Encode(), want[k][1])
		}
	}
	kOld := counters.Key{Endpoint: "ep0", Segment: "all", Arm: "m@0"}
	// Prediction p1 had a click on i1 counted as a success.
	for _, key := range []string{"ep1click\x00i1", "sp1"} {
		raw.Set(ctx, DefaultPrefix+"d:"+key, "1", time.Hour)
	}
	// A batch the first layout applied, still in some replica's log.
	logged := newBatch(true, map[counters.Key]uint64{kOld: 5}, toKeyOps([]store.FeedbackOp{click("i2", "p2", kOld)}), time.Now())
	raw.Set(ctx, DefaultPrefix+"batch:"+logged.idHex(), "r3", time.Hour)
	raw.HSet(ctx, DefaultPrefix+"hist:ep0\x00all", "60", "a", "120", "b")
	raw.SAdd(ctx, DefaultPrefix+"hist:index", DefaultPrefix+"hist:ep0\x00all")

	stores := make([]*Store, 4)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(ctx, srv.URL(), Options{WALDir: t.TempDir(), OpTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { s.Close() })
			stores[i] = s
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	s := stores[0]
	if got := countsOf(t, s); len(got) != len(want) {
		t.Fatalf("%d counters after the migration; want %d", len(got), len(want))
	} else {
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%v = %v after the migration; want %v", k, got[k], w)
			}
		}
	}
	for _, old := range []string{"counters:trials", "counters:successes", "hist:index", "hist:ep0\x00all"} {
		if n, _ := raw.Exists(ctx, DefaultPrefix+old).Result(); n != 0 {
			t.Errorf("the first layout's %q is still there", old)
		}
	}
	if h, err := s.History(ctx, "ep0", "all", 0, 0); err != nil || len(h) != 2 || string(h[0].Value) != "a" || string(h[1].Value) != "b" {
		t.Errorf("history after the migration: %v, %v", h, err)
	}

	// The click on p1 seen before; a second click on p1 (another item) adds
	// no second success.
	res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i1", "p1", kOld), click("i3", "p1", kOld)}, nil)
	if err != nil || !res[0].Duplicate || res[1].Duplicate || res[1].Success {
		t.Fatalf("events of a prediction the first layout counted: %+v, %v; want a duplicate, then a new event with no second success", res, err)
	}
	// The logged batch is recognised as applied: its replay changes nothing.
	if res, again, err := s.apply(ctx, s.admin, logged); err != nil || !again || !res[0].Success {
		t.Fatalf("replay of a batch the first layout applied: %+v, again=%v, %v", res, again, err)
	}
	if got := countsOf(t, s)[kOld]; got != want[kOld] {
		t.Fatalf("%v = %v after the old events were sent again; want %v", kOld, got, want[kOld])
	}

	// A store started later has nothing to move; counts stay.
	later := openStore(t, srv.URL(), onlineOpts())
	if got := countsOf(t, later); got[kOld] != want[kOld] || len(got) != len(want) {
		t.Fatalf("after another start: %v counters, %v = %v", len(got), kOld, got[kOld])
	}
	if !later.legacy() {
		t.Error("a store started after the migration does not consult the first layout's dedupe keys")
	}
}
