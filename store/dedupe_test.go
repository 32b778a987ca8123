package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/modelgate/modelgate/counters"
)

// A click costs the data dir one small record: the prediction's dedupe
// state is kept together, keyed by its expiry, so a day's clicks arriving
// in time order fill their pages. The one-key-per-fact layout of format 1
// took about 430 bytes of leaf per click, four keys and four index entries
// with their headers: this is what the data dir (and the part of it the
// gateway has mapped) grows by over the attribution window.
func TestFeedbackRecordsAreSmall(t *testing.T) {
	ctx := context.Background()
	db := open(t, t.TempDir())
	defer db.Close()
	k := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	start := time.Now().Add(24 * time.Hour)
	const batches, per = 40, 100
	for b := range batches {
		ops := make([]FeedbackOp, per)
		for i := range ops {
			n := b*per + i
			// A prediction id as the feedback service makes it: 16
			// random bytes and the 8-byte time.
			id := fmt.Sprintf("%016x%08d", n*7919%100003, n)
			ops[i] = FeedbackOp{Prediction: id, Event: fmt.Sprintf("click\x00item%d", n), Item: fmt.Sprintf("item%d", n),
				MaxItems: 20, Success: true, Counter: k, Expires: start.Add(time.Duration(n) * time.Millisecond)}
		}
		if _, err := db.ApplyFeedback(ctx, ops, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := db.db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket(bFeedback).Stats()
		if st.KeyN != batches*per {
			t.Errorf("feedback bucket has %d records, want %d", st.KeyN, batches*per)
		}
		if per := float64(st.LeafAlloc) / float64(st.KeyN); per > 80 {
			t.Errorf("%.0f bytes of leaf pages per clicked prediction, want at most 80", per)
		}
		if used := float64(st.LeafInuse) / float64(st.LeafAlloc); used < 0.85 {
			t.Errorf("feedback leaf pages %.0f%% used (%d of %d bytes), want at least 85%%", 100*used, st.LeafInuse, st.LeafAlloc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// putLegacy writes a dedupe key as format 1 did: the key with its expiry
// and extra bytes, and its entry in the expiry index.
func putLegacy(t *testing.T, dir string, keys map[string]time.Time, counts map[string]uint32) {
	t.Helper()
	db := open(t, dir)
	err := db.db.Update(func(tx *bolt.Tx) error {
		dd, err := tx.CreateBucketIfNotExists(bLegacyDedupe)
		if err != nil {
			return err
		}
		ex, err := tx.CreateBucketIfNotExists(bLegacyExpiry)
		if err != nil {
			return err
		}
		for key, exp := range keys {
			v := binary.BigEndian.AppendUint64(nil, uint64(exp.UnixNano()))
			if n, ok := counts[key]; ok {
				v = binary.BigEndian.AppendUint32(v, n)
			}
			if err := dd.Put([]byte(key), v); err != nil {
				return err
			}
			if err := ex.Put(append(v[:8:8], key...), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// A data dir written before keeps its dedupe keys in the one-key-per-fact
// layout: they are still read, with the new records, until the sweep has
// removed the last of them, and then their buckets are dropped.
func TestReadsFormat1DedupeKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	exp := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	late := exp.Add(time.Hour) // another prediction's keys, which outlive p's
	// Prediction p got a click on item a before the upgrade (its event,
	// its success, one distinct item); q got an impression that counted
	// its trial.
	putLegacy(t, dir, map[string]time.Time{
		"epclick\x00a": exp, "sp": exp, "ip": exp, "ip\x00a": exp,
		"eqimpression\x00": late, "tq": late,
	}, map[string]uint32{"ip": 1})

	db := open(t, dir)
	defer func() { db.Close() }()
	db.now = func() time.Time { return exp.Add(-time.Hour) }
	if !db.legacy.Load() {
		t.Fatal("the format-1 keys were not found at open")
	}
	click := func(pred, item string) FeedbackOp {
		return FeedbackOp{Prediction: pred, Event: "click\x00" + item, Item: item, MaxItems: 2, Success: true, Counter: k, Expires: exp}
	}
	impression := func(pred string, e time.Time) FeedbackOp {
		return FeedbackOp{Prediction: pred, Event: "impression\x00", MaxItems: 2, Trial: true, Counter: k, Expires: e}
	}
	steps := []struct {
		name string
		op   FeedbackOp
		want FeedbackResult
	}{
		{"the click sent before the upgrade, again", click("p", "a"), FeedbackResult{Duplicate: true}},
		{"a click on a second item: p's success was counted before", click("p", "b"), FeedbackResult{}},
		{"a third item: a and b are p's two", click("p", "c"), FeedbackResult{TooMany: true}},
		{"the second item's click, again", click("p", "b"), FeedbackResult{Duplicate: true}},
		{"p's first impression counts its trial", impression("p", exp), FeedbackResult{Trial: true}},
		{"q's impression, again", impression("q", late), FeedbackResult{Duplicate: true}},
		{"a click on q: its success is new", FeedbackOp{Prediction: "q", Event: "click\x00x", Item: "x", MaxItems: 2, Success: true, Trial: true, Counter: k, Expires: late},
			FeedbackResult{Success: true}},
	}
	for _, st := range steps {
		res, err := db.ApplyFeedback(ctx, []FeedbackOp{st.op}, nil)
		if err != nil || res[0] != st.want {
			t.Fatalf("%s: got %+v, %v; want %+v", st.name, res, err, st.want)
		}
	}

	buckets := func() (n int) {
		_ = db.db.View(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bLegacyDedupe, bLegacyExpiry} {
				if tx.Bucket(b) != nil {
					n++
				}
			}
			return nil
		})
		return n
	}
	// p's keys expire first: the sweep removes them and keeps q's.
	db.now = func() time.Time { return exp.Add(ExpiryGrace + time.Second) }
	if _, err := db.SweepExpired(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if !db.legacy.Load() || buckets() != 2 {
		t.Fatalf("format-1 buckets dropped while q's keys live (legacy %v, %d buckets)", db.legacy.Load(), buckets())
	}
	db.now = func() time.Time { return late.Add(-time.Minute) }
	if res, err := db.ApplyFeedback(ctx, []FeedbackOp{impression("q", late)}, nil); err != nil || !res[0].Duplicate {
		t.Fatalf("q's impression after p's sweep: %+v, %v; want a duplicate", res, err)
	}
	db.now = func() time.Time { return late.Add(ExpiryGrace + time.Second) }
	if _, err := db.SweepExpired(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if db.legacy.Load() || buckets() != 0 {
		t.Fatalf("format-1 buckets kept after their last key was swept (legacy %v, %d buckets)", db.legacy.Load(), buckets())
	}
	db.Close()
	db = open(t, dir)
	if db.legacy.Load() || buckets() != 0 {
		t.Fatal("format-1 buckets back after a reopen")
	}
}

func TestDecodeRecord(t *testing.T) {
	good := record{flags: recTrial | recSuccess, items: []uint64{1, 2}, events: []uint64{3, 4, 5}}
	r, err := decodeRecord(good.encode())
	if err != nil || fmt.Sprint(r) != fmt.Sprint(good) {
		t.Fatalf("round trip: %+v, %v; want %+v", r, err, good)
	}
	for _, bad := range [][]byte{
		nil,
		{recSuccess},
		{0, 3, 0, 0, 0, 0, 0, 0, 0, 1}, // three items, one hash
		{0, 0, 1, 2, 3},                // a partial hash
		{0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, // a varint overflow
	} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%x) accepted a malformed record", bad)
		}
	}
}
