package store

import (
	"context"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
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
		{EventKey: "e1click\x00i1", SuccessKey: "s1", Counter: k, Expires: exp},
		{EventKey: "e1click\x00i1", SuccessKey: "s1", Counter: k, Expires: exp}, // same event again
		{EventKey: "e1click\x00i2", SuccessKey: "s1", Counter: k, Expires: exp}, // another item, same prediction
		{EventKey: "e2impression\x00", TrialKey: "t2", Counter: k, Expires: exp},
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

func TestSweepExpired(t *testing.T) {
	ctx := context.Background()
	db := open(t, t.TempDir())
	defer db.Close()
	k := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	past := time.Now().Add(-time.Minute)
	if _, err := db.ApplyFeedback(ctx, []FeedbackOp{{EventKey: "old", Counter: k, Expires: past},
		{EventKey: "new", Counter: k, Expires: time.Now().Add(time.Hour)}}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := db.SweepExpired(ctx, 100)
	if err != nil || n != 1 {
		t.Fatalf("SweepExpired = %d, %v; want 1 key swept", n, err)
	}
	res, _ := db.ApplyFeedback(ctx, []FeedbackOp{{EventKey: "new", Counter: k, Expires: time.Now().Add(time.Hour)}}, nil)
	if !res[0].Duplicate {
		t.Fatal("an unexpired key was swept")
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
