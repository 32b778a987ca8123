package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/modelgate/modelgate/counters"
)

// FeedbackOp is one accepted-so-far feedback event to apply atomically.
//
// Every event belongs to a prediction, and the store keeps the dedupe
// state of a prediction's events together: the events seen (by Event), the
// distinct items they named, and whether the prediction's trial and success
// were counted. An event seen before is a duplicate and changes nothing.
// Otherwise, when Success is set, it counts the prediction's success if
// none was counted yet; when Trial is set, its trial likewise. When
// MaxItems > 0 and Item is not "", the event is accepted only if Item is
// one of the at most MaxItems distinct items already accepted for the
// prediction, or there are fewer than MaxItems of them (it is then added);
// otherwise it changes nothing and its result is TooMany. An accepted event
// with a Reward adds it to the prediction's running reward, which is
// capped at counters.RewardUnit; the counter gets what the capped sum rose
// by. The state expires at Expires.
type FeedbackOp struct {
	// Prediction identifies the prediction the event is about.
	Prediction string
	// Event identifies the event within its prediction (its type and
	// item).
	Event string
	// Item is the item the event names, "" for one about the whole list.
	Item string
	// MaxItems bounds the distinct non-empty items of the prediction's
	// events; 0 sets no bound.
	MaxItems int
	// Success and Trial say what the event counts, once per prediction.
	Success, Trial bool
	// Reward is a value reward event's value in counters.RewardUnit units
	// of its endpoint's cap (counters.RewardUnits); 0 adds nothing.
	Reward uint64
	// Counter is the cell the counts go to.
	Counter counters.Key
	// Expires is when the prediction's dedupe state may be forgotten: the
	// end of its attribution window, the same for all of its events.
	Expires time.Time
	// Now is the clock reading the caller checked the attribution window
	// against: the state is live through its Expires instant as of Now, so
	// an event the caller found inside its window always finds its earlier
	// copies. Zero means the store's own clock.
	Now time.Time
}

// DedupeKeys are a FeedbackOp's dedupe keys in the one-key-per-fact layout
// that Redis keeps (and that data dirs of format 1 kept): the event's key,
// and the prediction's success, trial and item-count keys; the key of one
// of the distinct items is Items NUL item; Reward holds the prediction's
// running capped reward. A key is "" when the op does not use it.
type DedupeKeys struct {
	Event, Success, Trial, Items, Reward string
}

// Keys returns op's keys in the one-key-per-fact layout.
func (op FeedbackOp) Keys() DedupeKeys {
	k := DedupeKeys{Event: "e" + op.Prediction + op.Event}
	if op.Success {
		k.Success = "s" + op.Prediction
	}
	if op.Trial {
		k.Trial = "t" + op.Prediction
	}
	if op.MaxItems > 0 {
		k.Items = "i" + op.Prediction
	}
	if op.Reward > 0 {
		k.Reward = "r" + op.Prediction
	}
	return k
}

// FeedbackResult says what one FeedbackOp did.
type FeedbackResult struct {
	Duplicate bool // the event was seen before and changed nothing
	TooMany   bool // the event named one item more than MaxItems and changed nothing
	Success   bool // a success was counted
	Trial     bool // a trial was counted
	// Reward is how many reward units the event added to its counter: what
	// it raised the prediction's capped reward by. RewardTotal is that
	// capped reward afterwards (when Reward > 0).
	Reward, RewardTotal uint64
}

// AddReward returns a prediction's capped reward after an event adds units
// to it, and what the event adds: the cap is counters.RewardUnit, so a
// prediction never adds more than one whole success. Both stores apply
// this rule (Redis in its script, with the same integers).
func AddReward(before, units uint64) (after, added uint64) {
	after = min(before+min(units, counters.RewardUnit), counters.RewardUnit)
	if after < before {
		return before, 0
	}
	return after, after - before
}

// ExpiryGrace is how long a prediction's dedupe state is kept past its
// expiry before it is removed: a feedback call that checked its window an
// instant before the expiry may reach the store a moment after it, and
// must still find the state.
const ExpiryGrace = 10 * time.Second

// MaxAttributionWindow is the longest attribution window an endpoint may
// have, and so the longest a prediction's dedupe state lives (plus
// ExpiryGrace).
const MaxAttributionWindow = 90 * 24 * time.Hour

// The feedback bucket holds one record per prediction that got feedback,
// under the key expiry (8 bytes, big-endian Unix nanoseconds) followed by
// the prediction's id. The expiry comes first so that the sweep removes
// records from the front of the bucket, with no index, and new records,
// whose predictions are recent, land on its last page, which is filled
// before it splits (feedbackFill; bbolt's default leaves pages half full).
//
// A record's value is: flags (1 byte: recTrial, recSuccess, recReward),
// when recReward is set the prediction's capped reward in reward units
// (uvarint), the number of distinct items (uvarint), their hashes, then
// the hashes of the events seen, 8 bytes each (the first 8 bytes of
// SHA-256, big-endian). Records written before value rewards never have
// recReward and read as they always did. A click
// on a prediction costs about 70 bytes of file where the one-key-per-fact
// layout cost about 430: that is what the data dir grows by over the
// attribution window.
const feedbackFill = 0.95

const (
	recTrial   = 1
	recSuccess = 2
	recReward  = 4
)

// Format 1's dedupe buckets: one key per fact (DedupeKeys) holding its
// expiry and, for an item count, the count; and an index by expiry for the
// sweep. Kept only while a data dir written before still holds live keys.
var (
	bLegacyDedupe = []byte("dedupe")
	bLegacyExpiry = []byte("dedupe_by")
)

var errBadRecord = errors.New("malformed feedback dedupe record")

func recordKey(exp time.Time, prediction string) []byte {
	k := make([]byte, 8, 8+len(prediction))
	binary.BigEndian.PutUint64(k, uint64(exp.UnixNano()))
	return append(k, prediction...)
}

// record is one prediction's dedupe state.
type record struct {
	flags  byte
	reward uint64 // the capped reward so far, in reward units
	items  []uint64
	events []uint64
}

func decodeRecord(v []byte) (record, error) {
	if len(v) < 2 {
		return record{}, errBadRecord
	}
	r := record{flags: v[0]}
	v = v[1:]
	if r.flags&recReward != 0 {
		rw, w := binary.Uvarint(v)
		if w <= 0 || rw > counters.RewardUnit {
			return record{}, errBadRecord
		}
		r.reward, v = rw, v[w:]
	}
	n, w := binary.Uvarint(v)
	rest := v[max(w, 0):]
	if w <= 0 || len(rest)%8 != 0 || n > uint64(len(rest)/8) {
		return record{}, errBadRecord
	}
	r.items = make([]uint64, n, n+1)
	r.events = make([]uint64, uint64(len(rest)/8)-n, uint64(len(rest)/8)-n+1)
	for i := range r.items {
		r.items[i] = binary.BigEndian.Uint64(rest[8*i:])
	}
	rest = rest[8*n:]
	for i := range r.events {
		r.events[i] = binary.BigEndian.Uint64(rest[8*i:])
	}
	return r, nil
}

func (r record) encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+8*(len(r.items)+len(r.events)))
	flags := r.flags &^ recReward
	if r.reward > 0 {
		flags |= recReward
	}
	b = append(b, flags)
	if r.reward > 0 {
		b = binary.AppendUvarint(b, r.reward)
	}
	b = binary.AppendUvarint(b, uint64(len(r.items)))
	for _, h := range r.items {
		b = binary.BigEndian.AppendUint64(b, h)
	}
	for _, h := range r.events {
		b = binary.BigEndian.AppendUint64(b, h)
	}
	return b
}

func hash64(s string) uint64 {
	sum := sha256.Sum256([]byte(s))
	return binary.BigEndian.Uint64(sum[:8])
}

func contains(hs []uint64, h uint64) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// ApplyFeedback applies ops and the pending trial deltas in one durable
// transaction (group-committed with concurrent callers): when it returns nil,
// every counted event survives a crash. Writing the pending trials in the
// same transaction keeps durable successes from running ahead of trials.
func (d *DB) ApplyFeedback(_ context.Context, ops []FeedbackOp, pendingTrials map[counters.Key]uint64) ([]FeedbackResult, error) {
	res := make([]FeedbackResult, len(ops))
	clock := d.now()
	err := d.db.Batch(func(tx *bolt.Tx) error {
		// Batch may run this function again on its own after a failure of a
		// sibling; start from a clean result each time.
		clear(res)
		d.db.track(tx, len(ops))
		fb, cb := tx.Bucket(bFeedback), tx.Bucket(bCounters)
		fb.FillPercent = feedbackFill
		for k, n := range pendingTrials {
			if err := addCounts(cb, k, n, 0, 0); err != nil {
				return err
			}
		}
		var old *legacyDedupe
		if d.legacy.Load() {
			old = openLegacy(tx)
		}
		for i, op := range ops {
			now := clock
			if !op.Now.IsZero() {
				now = op.Now
			}
			r, err := applyOne(fb, old, op, now)
			if err != nil {
				return fmt.Errorf("prediction %x: %w", op.Prediction, err)
			}
			res[i] = r
			var trials, successes uint64
			if r.Trial {
				trials = 1
			}
			if r.Success {
				successes = 1
			}
			if trials+successes+r.Reward > 0 {
				if err := addCounts(cb, op.Counter, trials, successes, r.Reward); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply feedback: %w", err)
	}
	return res, nil
}

// applyOne applies one op to its prediction's record in fb, reading the
// format-1 keys too when old is not nil.
func applyOne(fb *bolt.Bucket, old *legacyDedupe, op FeedbackOp, now time.Time) (FeedbackResult, error) {
	key := recordKey(op.Expires, op.Prediction)
	var rec record
	// A record is live through its Expires instant; one past it (not swept
	// yet) is forgotten, as if it were gone.
	if !op.Expires.Before(now) {
		if v := fb.Get(key); v != nil {
			var err error
			if rec, err = decodeRecord(v); err != nil {
				return FeedbackResult{}, err
			}
		}
	}
	var lk DedupeKeys
	if old != nil {
		lk = op.Keys()
	}
	ev := hash64(op.Event)
	if contains(rec.events, ev) || old.live(lk.Event, now) {
		return FeedbackResult{Duplicate: true}, nil
	}
	if op.MaxItems > 0 && op.Item != "" {
		it := hash64(op.Item)
		if !contains(rec.items, it) && !old.live(lk.Items+"\x00"+op.Item, now) {
			if len(rec.items)+old.count(lk.Items, now) >= op.MaxItems {
				return FeedbackResult{TooMany: true}, nil
			}
			rec.items = append(rec.items, it)
		}
	}
	var out FeedbackResult
	if op.Trial {
		out.Trial = rec.flags&recTrial == 0 && !old.live(lk.Trial, now)
		rec.flags |= recTrial
	}
	if op.Success {
		out.Success = rec.flags&recSuccess == 0 && !old.live(lk.Success, now)
		rec.flags |= recSuccess
	}
	if op.Reward > 0 {
		// Format 1 never held rewards: the record is the whole story.
		rec.reward, out.Reward = AddReward(rec.reward, op.Reward)
		out.RewardTotal = rec.reward
	}
	rec.events = append(rec.events, ev)
	return out, fb.Put(key, rec.encode())
}

// legacyDedupe reads the dedupe keys of format 1. Its methods are safe on
// a nil receiver, which holds no key.
type legacyDedupe struct{ keys *bolt.Bucket }

func openLegacy(tx *bolt.Tx) *legacyDedupe {
	if b := tx.Bucket(bLegacyDedupe); b != nil {
		return &legacyDedupe{keys: b}
	}
	return nil
}

// value returns what key holds after its expiry, and whether it is set
// and live as of now.
func (l *legacyDedupe) value(key string, now time.Time) ([]byte, bool) {
	if l == nil || key == "" {
		return nil, false
	}
	v := l.keys.Get([]byte(key))
	if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) >= now.UnixNano() {
		return v[8:], true
	}
	return nil, false
}

func (l *legacyDedupe) live(key string, now time.Time) bool {
	_, ok := l.value(key, now)
	return ok
}

// count returns the number of distinct items an item-count key holds.
func (l *legacyDedupe) count(key string, now time.Time) int {
	if v, ok := l.value(key, now); ok && len(v) == 4 {
		return int(binary.BigEndian.Uint32(v))
	}
	return 0
}

// dropEmptyLegacy deletes format 1's dedupe buckets when they hold no key,
// and reports whether they still hold some.
func dropEmptyLegacy(tx *bolt.Tx) (bool, error) {
	b := tx.Bucket(bLegacyDedupe)
	if b != nil {
		if k, _ := b.Cursor().First(); k != nil {
			return true, nil
		}
	}
	for _, name := range [][]byte{bLegacyDedupe, bLegacyExpiry} {
		if tx.Bucket(name) == nil {
			continue
		}
		if err := tx.DeleteBucket(name); err != nil {
			return false, err
		}
	}
	return false, nil
}

// SweepExpired deletes the dedupe state and the shadow lists of
// predictions that expired more than ExpiryGrace before now, at most limit
// records (or format-1 keys), and reports how many it deleted.
func (d *DB) SweepExpired(_ context.Context, limit int) (int, error) {
	n := 0
	cut := uint64(d.now().Add(-ExpiryGrace).UnixNano())
	err := d.db.Update(func(tx *bolt.Tx) error {
		n = 0
		var err error
		if n, err = sweepFront(tx.Bucket(bFeedback), cut, limit, nil); err != nil {
			return err
		}
		if n < limit {
			// A shadowed prediction's lists expire with its feedback state.
			m, err := sweepFront(tx.Bucket(bShadowLists), cut, limit-n, nil)
			n += m
			if err != nil {
				return err
			}
		}
		if !d.legacy.Load() || n >= limit {
			return nil
		}
		ex, dd := tx.Bucket(bLegacyExpiry), tx.Bucket(bLegacyDedupe)
		if ex != nil && dd != nil {
			m, err := sweepFront(ex, cut, limit-n, func(key []byte) error {
				if v := dd.Get(key); len(v) >= 8 && binary.BigEndian.Uint64(v) < cut {
					return dd.Delete(key)
				}
				return nil
			})
			n += m
			if err != nil {
				return err
			}
		}
		left, err := dropEmptyLegacy(tx)
		if err == nil && !left {
			tx.OnCommit(func() { d.legacy.Store(false) })
		}
		return err
	})
	return n, err
}

// sweepFront deletes b's first keys while their leading 8-byte expiry is
// before cut, at most limit of them, calling also (when not nil) with the
// rest of each key first.
func sweepFront(b *bolt.Bucket, cut uint64, limit int, also func(rest []byte) error) (int, error) {
	n := 0
	c := b.Cursor()
	for n < limit {
		// Deleting under a cursor can leave its position behind; start
		// from the front again, where the next expired key now is.
		k, _ := c.First()
		if len(k) < 8 || binary.BigEndian.Uint64(k) >= cut {
			break
		}
		if also != nil {
			if err := also(k[8:]); err != nil {
				return n, err
			}
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
