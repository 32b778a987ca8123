// Package store is the embedded durable state of one gateway process: the
// registry's models and endpoints, the bandit counters, feedback dedupe keys
// and the token signing key, in one bbolt file in the data dir. Every write
// is an fsynced transaction; concurrent feedback writes are group-committed.
//
// The interfaces the store is used through are declared by their users
// (registry.Store, feedback.Store, report.Series, ...); store/storetest
// states their contract and runs against this store and Redis alike.
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
)

// Bucket names a family of registry records.
type Bucket string

// Registry buckets.
const (
	Models    Bucket = "models"
	Endpoints Bucket = "endpoints"
)

var (
	bMeta     = []byte("meta")
	bCounters = []byte("counters")
	bFeedback = []byte("feedback") // 8-byte expiry + prediction -> its dedupe record (dedupe.go)
	bDisc     = []byte("discounted")
	bOffPol   = []byte("offpolicy")
	bHistory  = []byte("history")
	bLinear   = []byte("linear") // counters.LinKey.Encode -> float64 sums, little-endian
)

// FileName is the database file inside the data dir.
const FileName = "modelgate.db"

// DB is the embedded store. It is safe for concurrent use. Only one process
// may open a data dir at a time.
type DB struct {
	db  *boltDB
	now func() time.Time
	// legacy is set while the data dir still holds dedupe keys in the
	// one-key-per-fact layout of format 1 (dedupe.go); they are read until
	// the sweep has removed the last of them.
	legacy atomic.Bool
}

// Options configure OpenWith. The zero value is what Open uses.
type Options struct {
	// OnSync, when set, is called once for every write transaction the
	// store commits, after bbolt has written it and fsynced the file, and
	// before any caller whose write it holds returns: a write (an
	// acknowledged feedback event, a registry change) is never reported
	// done before an OnSync that covers it. Transactions that overlap may
	// report out of order and from different goroutines at once; OnSync
	// must be quick and safe for concurrent use. Tests use it to check
	// that acknowledgements follow the fsync, which a kill -9 cannot show
	// (the page cache survives the process).
	OnSync func(Commit)
}

// Commit describes one committed and fsynced write transaction, for
// Options.OnSync.
type Commit struct {
	// Tx is bbolt's id of the transaction; it grows from commit to commit.
	Tx int
	// Feedback is how many FeedbackOps the transaction holds, over every
	// ApplyFeedback call group-committed in it; 0 for other writes.
	Feedback int
}

// Open opens (creating if needed) the store in dir.
func Open(dir string) (*DB, error) { return OpenWith(dir, Options{}) }

// OpenWith is Open with options.
func OpenWith(dir string, opt Options) (*DB, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: another process holds the data dir", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	legacy := false
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bCounters, bFeedback, bDisc, bOffPol, bHistory, bShadow, bShadowLists, bLinear, []byte(Models), []byte(Endpoints)} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		var err error
		legacy, err = dropEmptyLegacy(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	d := &DB{db: &boltDB{DB: db, onSync: opt.OnSync}, now: time.Now}
	d.legacy.Store(legacy)
	return d, nil
}

// boltDB is bbolt's handle (never opened with NoSync: every commit
// fdatasyncs its pages, then its meta page, before Update or Batch
// returns) with write transactions that report their commits to onSync.
type boltDB struct {
	*bolt.DB
	onSync func(Commit)

	// curTx is the write transaction being built and cur its report;
	// only the goroutine holding bbolt's writer lock touches them. Keeping
	// the *Tx (not only its id: a rolled-back transaction's id is used
	// again) tells a new transaction from the next function of a batch.
	curTx *bolt.Tx
	cur   *Commit
}

// Update runs fn in a write transaction of its own.
func (b *boltDB) Update(fn func(*bolt.Tx) error) error {
	return b.DB.Update(func(tx *bolt.Tx) error {
		b.track(tx, 0)
		return fn(tx)
	})
}

// Batch runs fn in a write transaction shared with concurrent callers
// (bbolt's group commit).
func (b *boltDB) Batch(fn func(*bolt.Tx) error) error {
	return b.DB.Batch(func(tx *bolt.Tx) error {
		b.track(tx, 0)
		return fn(tx)
	})
}

// track adds feedback ops to tx's report and, on the first call for tx,
// arranges for onSync to get the report once tx commits: bbolt runs commit
// handlers after the commit's fdatasyncs and before Update or Batch returns
// to any caller. Called with bbolt's writer lock held.
func (b *boltDB) track(tx *bolt.Tx, feedback int) {
	if b.onSync == nil {
		return
	}
	if b.curTx != tx {
		c := &Commit{Tx: tx.ID()}
		b.curTx, b.cur = tx, c
		tx.OnCommit(func() {
			// With NoSync bbolt skips the fdatasyncs: nothing was synced.
			if !b.NoSync {
				b.onSync(*c)
			}
		})
	}
	b.cur.Feedback += feedback
}

// Close closes the database file.
func (d *DB) Close() error { return d.db.Close() }

// Put stores a registry record.
func (d *DB) Put(_ context.Context, b Bucket, key string, val []byte) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(b)).Put([]byte(key), val)
	})
}

// Delete removes a registry record; deleting a missing one is not an error.
func (d *DB) Delete(_ context.Context, b Bucket, key string) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(b)).Delete([]byte(key))
	})
}

// Update changes one registry record atomically, in one transaction: f
// gets the stored value (nil when there is none) and returns the value to
// store, or nil to delete the record. An error from f aborts the change and
// is returned as it is. Update returns what is stored afterwards (nil when
// nothing is). f runs while the store's write lock is held, once: keep it
// short, and do not call the store from it.
func (d *DB) Update(_ context.Context, b Bucket, key string, f func(cur []byte) ([]byte, error)) ([]byte, error) {
	var out []byte
	err := d.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(b))
		var cur []byte
		if v := bk.Get([]byte(key)); v != nil {
			cur = append([]byte(nil), v...)
		}
		next, err := f(cur)
		if err != nil {
			return err
		}
		out = next
		if next == nil {
			if cur == nil {
				return nil
			}
			return bk.Delete([]byte(key))
		}
		return bk.Put([]byte(key), next)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// List returns every record of a bucket by key.
func (d *DB) List(_ context.Context, b Bucket) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(b)).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// Meta returns a metadata value, or nil when unset.
func (d *DB) Meta(_ context.Context, key string) ([]byte, error) {
	var out []byte
	err := d.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// SetMeta sets a metadata value.
func (d *DB) SetMeta(_ context.Context, key string, val []byte) error {
	return d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte(key), val) })
}

// SigningKey returns the token signing key kept in the store, generating a
// random 32-byte key on first use.
func (d *DB) SigningKey(_ context.Context) ([]byte, error) {
	var key []byte
	err := d.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if v := m.Get([]byte("signing_key")); len(v) >= 32 {
			key = append([]byte(nil), v...)
			return nil
		}
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		return m.Put([]byte("signing_key"), key)
	})
	return key, err
}

// addCounts adds to a cell's stored counts: 16 bytes, trials then whole
// successes, 8 bytes big-endian each, followed by its reward units in 8
// more once it has any (so cells without value rewards keep the 16 bytes
// they always had).
func addCounts(b *bolt.Bucket, k counters.Key, trials, successes, reward uint64) error {
	ck := []byte(k.Encode())
	var cur [24]byte
	if v := b.Get(ck); len(v) == 16 || len(v) == 24 {
		copy(cur[:], v)
	}
	binary.BigEndian.PutUint64(cur[0:8], binary.BigEndian.Uint64(cur[0:8])+trials)
	binary.BigEndian.PutUint64(cur[8:16], binary.BigEndian.Uint64(cur[8:16])+successes)
	rw := binary.BigEndian.Uint64(cur[16:24]) + reward
	if rw == 0 {
		return b.Put(ck, cur[:16])
	}
	binary.BigEndian.PutUint64(cur[16:24], rw)
	return b.Put(ck, cur[:])
}

// LoadCounters returns every durable counter.
func (d *DB) LoadCounters(_ context.Context) ([]counters.Entry, error) {
	var out []counters.Entry
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bCounters).ForEach(func(k, v []byte) error {
			key, ok := counters.DecodeKey(string(k))
			if !ok || (len(v) != 16 && len(v) != 24) {
				return nil
			}
			e := counters.Entry{Key: key,
				Trials:    binary.BigEndian.Uint64(v[0:8]),
				Successes: binary.BigEndian.Uint64(v[8:16])}
			if len(v) == 24 {
				e.Reward = binary.BigEndian.Uint64(v[16:24])
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// AddTrials durably adds trial deltas, in one group-committed transaction.
func (d *DB) AddTrials(_ context.Context, deltas map[counters.Key]uint64) error {
	if len(deltas) == 0 {
		return nil
	}
	return d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCounters)
		for k, n := range deltas {
			if err := addCounts(b, k, n, 0, 0); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutDiscounted stores discounted-count snapshots, replacing earlier ones.
func (d *DB) PutDiscounted(_ context.Context, entries []counters.DiscEntry) error {
	if len(entries) == 0 {
		return nil
	}
	return d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bDisc)
		for _, e := range entries {
			v, err := e.Disc.MarshalBinary()
			if err != nil {
				return err
			}
			if err := b.Put([]byte(e.Key.Encode()), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadDiscounted returns the stored discounted-count snapshots, in key
// order; malformed ones are skipped.
func (d *DB) LoadDiscounted(_ context.Context) ([]counters.DiscEntry, error) {
	var out []counters.DiscEntry
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bDisc).ForEach(func(k, v []byte) error {
			key, ok := counters.DecodeKey(string(k))
			var disc counters.Disc
			if ok && disc.UnmarshalBinary(v) == nil {
				out = append(out, counters.DiscEntry{Key: key, Disc: disc})
			}
			return nil
		})
	})
	return out, err
}

// AddLinear durably adds linear-thompson sum deltas, element by element,
// in one group-committed transaction. A delta whose length differs from
// the stored sums' (which a key's layout rules out) replaces them.
func (d *DB) AddLinear(_ context.Context, deltas map[counters.LinKey][]float64) error {
	if len(deltas) == 0 {
		return nil
	}
	return d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bLinear)
		for k, delta := range deltas {
			key := []byte(k.Encode())
			sums := slices.Clone(delta)
			if cur := b.Get(key); len(cur) == 8*len(delta) {
				for i := range sums {
					sums[i] += math.Float64frombits(binary.LittleEndian.Uint64(cur[8*i:]))
				}
			}
			v := make([]byte, 0, 8*len(sums))
			for _, x := range sums {
				v = binary.LittleEndian.AppendUint64(v, math.Float64bits(x))
			}
			if err := b.Put(key, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadLinear returns every stored linear-thompson sums vector; malformed
// records are skipped.
func (d *DB) LoadLinear(_ context.Context) (map[counters.LinKey][]float64, error) {
	out := map[counters.LinKey][]float64{}
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bLinear).ForEach(func(k, v []byte) error {
			key, ok := counters.DecodeLinKey(string(k))
			if !ok || len(v)%8 != 0 {
				return nil
			}
			sums := make([]float64, len(v)/8)
			for i := range sums {
				sums[i] = math.Float64frombits(binary.LittleEndian.Uint64(v[8*i:]))
			}
			out[key] = sums
			return nil
		})
	})
	return out, err
}

// seriesKey is endpoint NUL segment NUL 8-byte big-endian time: the points
// of one series sort by time.
func seriesKey(endpoint, segment string, t int64) []byte {
	k := make([]byte, 0, len(endpoint)+len(segment)+10)
	k = append(k, endpoint...)
	k = append(k, 0)
	k = append(k, segment...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(t))
}

func parseSeriesKey(k []byte) (endpoint, segment string, t int64, ok bool) {
	if len(k) < 10 {
		return "", "", 0, false
	}
	head := string(k[:len(k)-8])
	parts := strings.SplitN(head, "\x00", 3)
	if len(parts) != 3 || parts[2] != "" {
		return "", "", 0, false
	}
	return parts[0], parts[1], int64(binary.BigEndian.Uint64(k[len(k)-8:])), true
}

// Record is one stored point of a time series.
type Record struct {
	Endpoint string
	Segment  string
	Time     int64 // unix seconds
	Value    []byte
}

// PutOffPolicy stores off-policy bucket snapshots, replacing earlier ones.
func (d *DB) PutOffPolicy(_ context.Context, buckets map[offpolicy.Key]offpolicy.Minute) error {
	if len(buckets) == 0 {
		return nil
	}
	return d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bOffPol)
		for k, m := range buckets {
			v, err := m.MarshalBinary()
			if err != nil {
				return err
			}
			if err := b.Put(seriesKey(k.Endpoint, k.Segment, k.Minute), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadOffPolicy returns every stored off-policy bucket; malformed ones are
// skipped.
func (d *DB) LoadOffPolicy(_ context.Context) (map[offpolicy.Key]offpolicy.Minute, error) {
	recs, err := d.all(bOffPol)
	if err != nil {
		return nil, err
	}
	out := make(map[offpolicy.Key]offpolicy.Minute, len(recs))
	for _, r := range recs {
		var m offpolicy.Minute
		if m.UnmarshalBinary(r.Value) == nil {
			out[offpolicy.Key{Endpoint: r.Endpoint, Segment: r.Segment, Minute: r.Time}] = m
		}
	}
	return out, nil
}

func (d *DB) all(bucket []byte) ([]Record, error) {
	var out []Record
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if e, s, t, ok := parseSeriesKey(k); ok {
				out = append(out, Record{Endpoint: e, Segment: s, Time: t, Value: append([]byte(nil), v...)})
			}
			return nil
		})
	})
	return out, err
}

// AddHistory stores a history point unless one exists for the same series
// and time (so replicas sharing a store write one series).
func (d *DB) AddHistory(ctx context.Context, r Record) (bool, error) {
	n, err := d.AddHistoryBatch(ctx, []Record{r})
	return n == 1, err
}

// AddHistoryBatch stores history points in one transaction, each unless
// one exists for the same series and time; it returns how many it stored.
func (d *DB) AddHistoryBatch(_ context.Context, recs []Record) (int, error) {
	added := 0
	err := d.db.Update(func(tx *bolt.Tx) error {
		added = 0
		b := tx.Bucket(bHistory)
		for _, r := range recs {
			k := seriesKey(r.Endpoint, r.Segment, r.Time)
			if b.Get(k) != nil {
				continue
			}
			if err := b.Put(k, r.Value); err != nil {
				return err
			}
			added++
		}
		return nil
	})
	return added, err
}

// History returns the points of one series with from ≤ time < to (a zero
// bound is open), oldest first.
func (d *DB) History(_ context.Context, endpoint, segment string, from, to int64) ([]Record, error) {
	var out []Record
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bHistory).Cursor()
		prefix := seriesKey(endpoint, segment, 0)
		prefix = prefix[:len(prefix)-8]
		for k, v := c.Seek(seriesKey(endpoint, segment, max(from, 0))); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			_, _, t, ok := parseSeriesKey(k)
			if !ok {
				continue
			}
			if to != 0 && t >= to {
				break
			}
			out = append(out, Record{Endpoint: endpoint, Segment: segment, Time: t, Value: append([]byte(nil), v...)})
		}
		return nil
	})
	return out, err
}

// PruneSeries deletes history points and off-policy minutes older than
// cutoff, and thins history points older than thinBefore to one per
// keepEvery. It returns how many points it deleted.
func (d *DB) PruneSeries(_ context.Context, cutoff, thinBefore, keepEvery int64) (int, error) {
	n := 0
	err := d.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bHistory, bOffPol} {
			c := tx.Bucket(name).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				_, _, t, ok := parseSeriesKey(k)
				drop := !ok || t < cutoff
				if !drop && string(name) == string(bHistory) && t < thinBefore && keepEvery > 0 && t%keepEvery != 0 {
					drop = true
				}
				if drop {
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
			}
		}
		return nil
	})
	return n, err
}

var bAudit = []byte("audit")

// AppendAudit appends an audit entry.
func (d *DB) AppendAudit(_ context.Context, entry []byte) error {
	return d.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bAudit)
		if err != nil {
			return err
		}
		seq, _ := b.NextSequence()
		k := binary.BigEndian.AppendUint64(nil, uint64(d.now().UnixNano()))
		k = binary.BigEndian.AppendUint64(k, seq)
		return b.Put(k, entry)
	})
}

// ListAudit returns up to limit audit entries, newest first.
func (d *DB) ListAudit(_ context.Context, limit int) ([][]byte, error) {
	var out [][]byte
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			out = append(out, append([]byte(nil), v...))
		}
		return nil
	})
	return out, err
}
