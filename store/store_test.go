package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/acklog"
)

func open(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestFeedbackDedupeAndCounts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := open(t, dir)
	k := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	exp := time.Now().Add(time.Hour)
	ops := []FeedbackOp{
		{Prediction: "1", Event: "click\x00i1", Item: "i1", Success: true, Counter: k, Expires: exp},
		{Prediction: "1", Event: "click\x00i1", Item: "i1", Success: true, Counter: k, Expires: exp}, // same event again
		{Prediction: "1", Event: "click\x00i2", Item: "i2", Success: true, Counter: k, Expires: exp}, // another item, same prediction
		{Prediction: "2", Event: "impression\x00", Trial: true, Counter: k, Expires: exp},
	}
	res, err := db.ApplyFeedback(ctx, ops, map[counters.Key]uint64{k: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []FeedbackResult{{Success: true}, {Duplicate: true}, {}, {Trial: true}}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("op %d: got %+v, want %+v", i, res[i], want[i])
		}
	}
	db.Close()

	db = open(t, dir) // everything above must have reached the file
	defer db.Close()
	got, err := db.LoadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Trials != 6 || got[0].Successes != 1 || got[0].Key != k {
		t.Fatalf("counters after reopen = %+v, want 6 trials, 1 success", got)
	}
	res, err = db.ApplyFeedback(ctx, ops[:1], nil)
	if err != nil || !res[0].Duplicate {
		t.Fatalf("event replayed after reopen: %+v %v, want duplicate", res, err)
	}
}

func TestRegistryRecordsAndSigningKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := open(t, dir)
	if err := db.Put(ctx, Models, "mf@1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	k1, err := db.SigningKey(ctx)
	if err != nil || len(k1) != 32 {
		t.Fatalf("SigningKey = %x, %v", k1, err)
	}
	db.Close()
	db = open(t, dir)
	defer db.Close()
	m, _ := db.List(ctx, Models)
	if string(m["mf@1"]) != `{"a":1}` {
		t.Fatalf("models after reopen = %v", m)
	}
	k2, _ := db.SigningKey(ctx)
	if string(k1) != string(k2) {
		t.Fatal("the signing key changed across a reopen")
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("a second Open of a held data dir must fail")
	}
}

// The store decides whether an earlier copy of an event is still live with
// the caller's clock reading, the one the attribution window was checked
// with: a click at the very end of the window is a duplicate even when the
// store's own clock has moved past the window by then.
func TestFeedbackDedupeUsesCallersClock(t *testing.T) {
	ctx := context.Background()
	db := open(t, t.TempDir())
	defer db.Close()
	k := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	end := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC) // the window's end: Expires
	click := func(now time.Time) FeedbackOp {
		return FeedbackOp{Prediction: "1", Event: "click\x00i1", Item: "i1", Success: true, Counter: k, Expires: end, Now: now}
	}
	db.now = func() time.Time { return end.Add(-time.Hour) }
	if res, err := db.ApplyFeedback(ctx, []FeedbackOp{click(end.Add(-time.Hour))}, nil); err != nil || !res[0].Success {
		t.Fatalf("first click: %+v, %v", res, err)
	}
	db.now = func() time.Time { return end.Add(time.Millisecond) } // the store reads its clock a moment later
	tests := []struct {
		name string
		now  time.Time
		want FeedbackResult
	}{
		{"checked at the window's last instant", end, FeedbackResult{Duplicate: true}},
		{"checked a millisecond before", end.Add(-time.Millisecond), FeedbackResult{Duplicate: true}},
		{"after the window (the caller would have refused it)", end.Add(time.Nanosecond), FeedbackResult{Success: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := db.ApplyFeedback(ctx, []FeedbackOp{click(tc.now)}, nil)
			if err != nil || res[0] != tc.want {
				t.Fatalf("got %+v, %v; want %+v", res, err, tc.want)
			}
		})
	}
	// Swept only once ExpiryGrace has passed.
	db.now = func() time.Time { return end.Add(ExpiryGrace / 2) }
	if n, err := db.SweepExpired(ctx, 100); err != nil || n != 0 {
		t.Fatalf("SweepExpired within the grace = %d, %v; want 0", n, err)
	}
	db.now = func() time.Time { return end.Add(ExpiryGrace + time.Second) }
	if n, err := db.SweepExpired(ctx, 100); err != nil || n == 0 {
		t.Fatalf("SweepExpired after the grace = %d, %v; want the keys swept", n, err)
	}
}

// Every write the store acknowledges — a feedback call returning, a
// registry record stored — follows an fsync reported by OnSync that holds
// it. With writers one at a time each call's own commit must come between
// its start and its return; with concurrent writers (group commit) some
// commit holding feedback must, and the commits must hold every op once.
func TestAcknowledgementFollowsSync(t *testing.T) {
	k := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	exp := time.Now().Add(time.Hour)
	feedback := func(db *DB, id string) error {
		ops := []FeedbackOp{
			{Prediction: id, Event: "click", Success: true, Counter: k, Expires: exp},
			{Prediction: id, Event: "impression", Trial: true, Counter: k, Expires: exp},
		}
		_, err := db.ApplyFeedback(context.Background(), ops, map[counters.Key]uint64{k: 1})
		return err
	}
	put := func(db *DB, id string) error {
		return db.Put(context.Background(), Endpoints, id, []byte(`{}`))
	}
	cases := []struct {
		name             string
		write            func(db *DB, id string) error
		weight           int              // units per write
		held             func(Commit) int // units a commit holds
		writers, perEach int
	}{
		{"feedback one at a time", feedback, 2, func(c Commit) int { return c.Feedback }, 1, 30},
		{"feedback group-committed", feedback, 2, func(c Commit) int { return c.Feedback }, 8, 25},
		{"registry one at a time", put, 1, func(Commit) int { return 1 }, 1, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log acklog.Log
			var started atomic.Bool // Open's own commit is no write under test
			db, err := OpenWith(t.TempDir(), Options{OnSync: func(c Commit) {
				if started.Load() {
					log.Synced(tc.held(c))
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if db.db.NoSync {
				t.Fatal("bbolt's NoSync is set: commits are not fsynced")
			}
			started.Store(true)
			if err := log.Run(tc.writers, tc.perEach, tc.weight, func(id string) error { return tc.write(db, id) }); err != nil {
				t.Fatal(err)
			}
			n := tc.writers * tc.perEach
			if syncs, held := log.Totals(); held != n*tc.weight || syncs > n {
				t.Fatalf("%d fsynced commits held %d units, want %d in at most %d commits", syncs, held, n*tc.weight, n)
			}
		})
	}
}
