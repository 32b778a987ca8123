package redisstore

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/acklog"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func openTestWAL(t *testing.T, dir string, maxBytes int64) (*wal, [][]byte) {
	t.Helper()
	var got [][]byte
	w, err := openWAL(dir, maxBytes, nil, func(p []byte) error {
		got = append(got, append([]byte(nil), p...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, got
}

func walFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "wal-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// drain replays every record the way the Store's loop does.
func drain(t *testing.T, w *wal) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		p, n, ok, err := w.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, p)
		w.confirm(n)
	}
}

func TestWALAppendReopenReplay(t *testing.T) {
	tests := []struct {
		name     string
		records  int
		size     int
		maxBytes int64 // small values force many segments
	}{
		{"one record", 1, 10, 1 << 20},
		{"many records in one segment", 100, 100, 1 << 30},
		{"many segments", 300, 1000, 600 << 10}, // segments of 75 KiB
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, got := openTestWAL(t, dir, tc.maxBytes)
			if len(got) != 0 {
				t.Fatalf("fresh log replayed %d records", len(got))
			}
			var want [][]byte
			for i := range tc.records {
				p := bytes.Repeat([]byte{byte(i)}, tc.size)
				p = append(p, fmt.Sprint(i)...)
				want = append(want, p)
				if err := w.append(p); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
			if n, _ := w.backlog(); n != tc.records {
				t.Fatalf("backlog %d, want %d", n, tc.records)
			}
			if err := w.close(); err != nil {
				t.Fatal(err)
			}

			w, got = openTestWAL(t, dir, tc.maxBytes)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("reopen saw %d records, want the %d appended in order", len(got), len(want))
			}
			if n, b := w.backlog(); n != tc.records || b <= 0 {
				t.Fatalf("backlog after reopen = %d, %d", n, b)
			}
			if replayed := drain(t, w); !reflect.DeepEqual(replayed, want) {
				t.Fatalf("replay gave %d records, want %d in order", len(replayed), len(want))
			}
			if n, b := w.backlog(); n != 0 || b != 0 {
				t.Fatalf("backlog after replay = %d, %d", n, b)
			}
			if f := walFiles(t, dir); len(f) != 0 {
				t.Fatalf("confirmed segments left on disk: %v", f)
			}
			// The log keeps working after it emptied itself.
			if err := w.append([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if r := drain(t, w); len(r) != 1 || string(r[0]) != "after" {
				t.Fatalf("replay after emptying = %q", r)
			}
			w.close()
		})
	}
}

func TestWALTornTail(t *testing.T) {
	tests := []struct {
		name string
		tail func(rec []byte) []byte // what a crash left after two good records
	}{
		{"half a header", func(rec []byte) []byte { return rec[:3] }},
		{"header without payload", func(rec []byte) []byte { return rec[:walRecHeader] }},
		{"half a payload", func(rec []byte) []byte { return rec[:len(rec)-2] }},
		{"bad checksum", func(rec []byte) []byte { r := bytes.Clone(rec); r[len(r)-1] ^= 1; return r }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := openTestWAL(t, dir, 1<<20)
			for _, p := range []string{"one", "two"} {
				if err := w.append([]byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			w.close()
			files := walFiles(t, dir)
			f, err := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail(frame([]byte("three, never acknowledged"))))
			f.Close()

			w, got := openTestWAL(t, dir, 1<<20)
			if len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "two" {
				t.Fatalf("after a torn tail the log holds %q, want [one two]", got)
			}
			if err := w.append([]byte("four")); err != nil {
				t.Fatal(err)
			}
			w.close()
			_, got = openTestWAL(t, dir, 1<<20)
			if len(got) != 3 || string(got[2]) != "four" {
				t.Fatalf("append after truncating a torn tail: log holds %q", got)
			}
		})
	}
}

func TestWALFull(t *testing.T) {
	dir := t.TempDir()
	w, _ := openTestWAL(t, dir, 64<<10)
	defer w.close()
	p := make([]byte, 1000)
	n := 0
	var err error
	for ; n < 1000; n++ {
		if err = w.append(p); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrWALFull) {
		t.Fatalf("append into a full log: %v, want ErrWALFull", err)
	}
	if rec := int64(walRecHeader + len(p)); int64(len(walHeader))+int64(n+1)*rec <= 64<<10 || int64(len(walHeader))+int64(n)*rec > 64<<10 {
		t.Fatalf("a 64 KiB log took %d records of %d bytes", n, rec)
	}
	if c, _ := w.backlog(); c != n {
		t.Fatalf("backlog %d, want the %d accepted records", c, n)
	}
	drain(t, w)
	if err := w.append(p); err != nil {
		t.Fatalf("append after the replay emptied the log: %v", err)
	}
}

func TestWALConcurrentAppendsShareFsyncs(t *testing.T) {
	dir := t.TempDir()
	w, _ := openTestWAL(t, dir, 1<<30)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := w.append(fmt.Appendf(nil, "%d/%d", g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// The replayer runs alongside the appenders.
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < writers*each && time.Now().Before(deadline) {
		for _, p := range drain(t, w) {
			if seen[string(p)] {
				t.Fatalf("record %s replayed twice", p)
			}
			seen[string(p)] = true
		}
	}
	wg.Wait()
	for _, p := range drain(t, w) {
		seen[string(p)] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("replayed %d distinct records, want %d", len(seen), writers*each)
	}
	w.close()
}

// An append returns only after an fsync that holds its record: one at a
// time, each append's own fsync comes between its start and its return;
// concurrently, appends share fsyncs, which together hold every record once.
// Large records make the log rotate to new segments on the way.
func TestWALAppendFollowsSync(t *testing.T) {
	cases := []struct {
		name             string
		writers, perEach int
		size             int
	}{
		{"one at a time", 1, 40, 100},
		{"concurrent", 8, 25, 100},
		{"one at a time, rotating", 1, 60, 4 << 10},
		{"concurrent, rotating", 8, 20, 4 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log acklog.Log
			w, err := openWAL(t.TempDir(), 1<<20, log.Synced, // 128 KiB segments
				func([]byte) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			defer w.close()
			err = log.Run(tc.writers, tc.perEach, 1, func(id string) error {
				return w.append(append([]byte(id), bytes.Repeat([]byte{'.'}, tc.size)...))
			})
			if err != nil {
				t.Fatal(err)
			}
			n := tc.writers * tc.perEach
			if syncs, recs := log.Totals(); recs != n || syncs > n {
				t.Fatalf("%d fsyncs held %d records, want %d in at most %d fsyncs", syncs, recs, n, n)
			}
			if tc.size > 1<<10 && len(walFiles(t, w.dir)) < 2 {
				t.Fatalf("the log did not rotate: %v", walFiles(t, w.dir))
			}
		})
	}
}

func TestWALDirLocked(t *testing.T) {
	dir := t.TempDir()
	w, _ := openTestWAL(t, dir, 1<<20)
	if _, err := openWAL(dir, 1<<20, nil, func([]byte) error { return nil }); err == nil {
		t.Fatal("a second open of a WAL dir in use must fail")
	}
	w.close()
	w, _ = openTestWAL(t, dir, 1<<20)
	w.close()
}

func sampleBatch() *batch {
	k := counters.Key{Endpoint: "home", Segment: "surface=music\x00odd", Arm: "mf@1"}
	exp := time.Unix(1_800_000_000, 123)
	b := &batch{
		created:  time.Unix(1_700_000_000, 42),
		feedback: true,
		deltas:   map[counters.Key]uint64{k: 7, {Endpoint: "home", Segment: "all", Arm: "mf@2"}: 1 << 40},
		ops: []keyOp{
			{EventKey: "e\x01\x02click\x00i1", SuccessKey: "s\x01\x02", ItemsKey: "i\x01\x02", Item: "i1", MaxItems: 10, Counter: k, Expires: exp},
			{EventKey: "e\x01\x02impression\x00", TrialKey: "t\x01\x02", Counter: k, Expires: exp},
			{EventKey: "e\x01\x02reward\x00i2", RewardKey: "r\x01\x02", Reward: 250_000, Item: "i2", Counter: k, Expires: exp},
		},
		prov: []byte{provNew, provDup, provNew},
	}
	copy(b.id[:], "0123456789abcdef")
	return b
}

func TestBatchEncoding(t *testing.T) {
	b := sampleBatch()
	enc := encodeBatch(b)
	golden := filepath.Join("testdata", "batch-v3.bin")
	if *update {
		if err := os.WriteFile(golden, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A log written by an earlier build must still replay.
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, want) {
		t.Fatalf("the v3 record encoding changed (run with -update only if old logs need not replay):\n got %x\nwant %x", enc, want)
	}
	v1, err := os.ReadFile(filepath.Join("testdata", "batch-v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile(filepath.Join("testdata", "batch-v2.bin"))
	if err != nil {
		t.Fatal(err)
	}
	v2Want := sampleBatch() // version 2 had no reward (nor its op)
	v2Want.ops, v2Want.prov = v2Want.ops[:2], v2Want.prov[:2]
	v1Want := sampleBatch() // version 1 had no item limit either
	v1Want.ops, v1Want.prov = v1Want.ops[:2], v1Want.prov[:2]
	v1Want.ops[0].ItemsKey, v1Want.ops[0].Item, v1Want.ops[0].MaxItems = "", "", 0
	for name, tc := range map[string]struct {
		rec  []byte
		want *batch
	}{"v3": {want, b}, "v2": {v2, v2Want}, "v1": {v1, v1Want}} {
		got, err := decodeBatch(tc.rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w := tc.want
		if got.id != w.id || !got.created.Equal(w.created) || got.feedback != w.feedback ||
			!reflect.DeepEqual(got.deltas, w.deltas) || !reflect.DeepEqual(got.prov, w.prov) || len(got.ops) != len(w.ops) {
			t.Fatalf("%s: decoded %+v, want %+v", name, got, w)
		}
		for i := range w.ops {
			g, w := got.ops[i], w.ops[i]
			if g.EventKey != w.EventKey || g.TrialKey != w.TrialKey || g.SuccessKey != w.SuccessKey || g.Counter != w.Counter || !g.Expires.Equal(w.Expires) ||
				g.ItemsKey != w.ItemsKey || g.Item != w.Item || g.MaxItems != w.MaxItems || g.RewardKey != w.RewardKey || g.Reward != w.Reward {
				t.Errorf("%s: op %d decoded %+v, want %+v", name, i, g, w)
			}
		}
	}
	// Every truncation of a record is refused, never misread.
	for n := range len(enc) {
		if _, err := decodeBatch(enc[:n]); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", n, len(enc))
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch(sampleBatch()))
	f.Add(encodeBatch(&batch{deltas: map[counters.Key]uint64{{Endpoint: "a"}: 1}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := decodeBatch(p)
		if err != nil {
			return
		}
		if again, err := decodeBatch(encodeBatch(b)); err != nil || len(again.ops) != len(b.ops) || len(again.deltas) != len(b.deltas) {
			t.Fatalf("re-encoding a decoded record: %v", err)
		}
	})
}
