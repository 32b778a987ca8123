// Package counters holds the bandit's trial and success counts per
// (endpoint, segment, arm) in memory, with the trials not yet written to the
// durable store kept as a pending delta. The request path only touches atomics.
package counters

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AggregateSegment names the in-memory cells holding an arm's counts summed
// over every segment of an endpoint (the endpoint-wide posterior a segment
// borrows its prior from). It is never a segment name ("all" or "k=v,…"),
// its cells never have pending trials, and it is never written to a store:
// it is rebuilt from the segments at start-up.
const AggregateSegment = "*"

// AllSegment is the one segment of an endpoint without segment_by, and the
// name reports use for "across every segment" of a segmented endpoint.
const AllSegment = "all"

// OtherSegment is the overflow segment of a segmented endpoint: requests
// whose segment would exceed the endpoint's max_segments are served, counted
// and reported here. It never collides with a segment named from a context
// ("k=v,…" always holds '=').
const OtherSegment = "other"

// HoldoutSegment holds the counts of an endpoint's holdout: the trials and
// clicks of the predictions its policy's holdout arm served in place of the
// bandit. The bandit never reads it: it is in no view but its own, not in
// the aggregate and not capped by max_segments. Like "all" and "other" it
// holds no '=', so no context names it. Its cells are stored and shared
// between replicas like any segment's.
const HoldoutSegment = "holdout"

// DefaultMaxSegments is how many segments an endpoint keeps when its policy
// does not say.
const DefaultMaxSegments = 1000

// Key names one posterior: an arm of an endpoint in one segment.
type Key struct {
	Endpoint string
	Segment  string
	Arm      string
}

// Encode returns k's storage encoding: the key of its counts in the data
// dir and their field in Redis, endpoint NUL arm NUL segment. Endpoint and
// arm names cannot hold NUL; a segment value could, so it goes last. Both
// stores use it, so the format is the same wherever counts are kept.
func (k Key) Encode() string {
	return k.Endpoint + "\x00" + k.Arm + "\x00" + k.Segment
}

// DecodeKey parses Key.Encode's encoding; false when s is not one.
func DecodeKey(s string) (Key, bool) {
	ep, rest, ok := strings.Cut(s, "\x00")
	if !ok {
		return Key{}, false
	}
	arm, seg, ok := strings.Cut(rest, "\x00")
	if !ok {
		return Key{}, false
	}
	return Key{Endpoint: ep, Arm: arm, Segment: seg}, true
}

// RewardUnit is how many reward units make one whole success. An endpoint
// with value rewards counts each prediction's capped, normalised reward
// min(Σ value, cap) / cap in these units, so fractional successes are
// integers wherever they are stored and add up exactly across replicas.
const RewardUnit = 1_000_000

// RewardUnits converts one reward event's value into reward units of an
// endpoint whose cap is capValue: value / capValue in RewardUnits, rounded
// to the nearest unit, at most RewardUnit (a value above the cap fills the
// prediction's reward by itself). A value that is not finite and ≥ 0, or a
// cap that is not finite and > 0, gives 0.
func RewardUnits(value, capValue float64) uint64 {
	if !(value >= 0) || math.IsInf(value, 1) || !(capValue > 0) || math.IsInf(capValue, 1) {
		return 0
	}
	if value >= capValue {
		return RewardUnit
	}
	return min(uint64(math.Round(value/capValue*RewardUnit)), RewardUnit)
}

// Successes is the one rule for an arm's successes: its whole successes
// (clicks, one per prediction) plus its reward units as a fraction of
// RewardUnit (value rewards, at most one whole success per prediction). The
// bandit's posteriors, the report, the off-policy sums, the holdout and the
// history all read successes through it.
func Successes(whole, reward uint64) float64 {
	return float64(whole) + float64(reward)/RewardUnit
}

// Cell holds one Key's counts. Its methods are safe for concurrent use.
type Cell struct {
	key       Key
	table     *Table
	trials    atomic.Uint64
	successes atomic.Uint64 // whole successes (clicks)
	reward    atomic.Uint64 // value rewards, in RewardUnit units
	pending   atomic.Uint64 // trials counted in memory but not yet durable
	disc      discState
}

// Counts returns the cell's current trials and successes (Successes of its
// whole successes and reward units).
func (c *Cell) Counts() (trials uint64, successes float64) {
	t, s, r := c.Raw()
	return t, Successes(s, r)
}

// Raw returns the cell's trials, whole successes and reward units, as the
// stores keep them.
func (c *Cell) Raw() (trials, successes, reward uint64) {
	return c.trials.Load(), c.successes.Load(), c.reward.Load()
}

// AddTrial counts one trial now and marks it pending for the next flush.
func (c *Cell) AddTrial() {
	c.trials.Add(1)
	if c.pending.Add(1) == 1 {
		c.table.markDirty(c)
	}
}

// AddDurable adds trials, whole successes and reward units that are already
// durable.
func (c *Cell) AddDurable(trials, successes, reward uint64) {
	if trials > 0 {
		c.trials.Add(trials)
	}
	if successes > 0 {
		c.successes.Add(successes)
	}
	if reward > 0 {
		c.reward.Add(reward)
	}
}

// Table maps keys to cells. The zero value is ready to use and safe for
// concurrent use.
type Table struct {
	m sync.Map // Key -> *Cell

	// segs indexes the segments of each endpoint that have cells, so the
	// request path can tell a known segment from a new one, and a report
	// can list them, without scanning every cell.
	segs sync.Map // endpoint -> *segIndex

	// dirty lists the cells whose pending count went from 0 to 1 since the
	// last drain, so a drain never scans every cell. The lock is taken once
	// per cell per flush interval, never held across anything else.
	mu    sync.Mutex
	dirty []*Cell

	// lin holds the linear-thompson sums (LinKey -> *LinCell) and linDirty
	// the cells with a pending delta, as dirty does for counts.
	lin      sync.Map
	linMu    sync.Mutex
	linDirty []*LinCell
}

func (t *Table) markDirty(c *Cell) {
	t.mu.Lock()
	t.dirty = append(t.dirty, c)
	t.mu.Unlock()
}

// Cell returns the cell for k, creating an empty one on first use. A new
// cell's segment becomes known to the endpoint's segment index; the cap on
// segments is the caller's (see Admit).
func (t *Table) Cell(k Key) *Cell {
	if c, ok := t.m.Load(k); ok {
		return c.(*Cell)
	}
	c, loaded := t.m.LoadOrStore(k, &Cell{key: k, table: t})
	if !loaded {
		t.index(k.Endpoint).add(k.Segment)
	}
	return c.(*Cell)
}

// segIndex is one endpoint's set of segments. n counts the named segments
// (not AggregateSegment, AllSegment or OtherSegment): what max_segments caps.
type segIndex struct {
	mu    sync.Mutex // serialises admissions, so the cap holds exactly
	known sync.Map   // segment -> struct{}
	n     atomic.Int64
}

func (x *segIndex) add(segment string) {
	if _, loaded := x.known.LoadOrStore(segment, struct{}{}); !loaded && Counted(segment) {
		x.n.Add(1)
	}
}

// Counted reports whether a segment counts against max_segments: every
// segment named from a context does; AllSegment, OtherSegment,
// HoldoutSegment and AggregateSegment do not.
func Counted(segment string) bool {
	return segment != AllSegment && segment != OtherSegment && segment != AggregateSegment && segment != HoldoutSegment
}

// InAggregate reports whether a segment's counts belong in its endpoint's
// AggregateSegment cells, which hold the sum over every segment of a
// segmented endpoint: a named segment and OtherSegment do; AllSegment (the
// only segment of an endpoint without segment_by, never summed: such an
// endpoint has no aggregate), HoldoutSegment (not the bandit's) and
// AggregateSegment itself do not. It is the
// one rule of what the aggregate sums, for the counts added as they happen
// (AddToAggregate) and for the sums rebuilt from the segments (Refresh).
func InAggregate(segment string) bool {
	return segment != AllSegment && segment != AggregateSegment && segment != HoldoutSegment
}

// View returns the segment whose cells hold the counts of segment as the
// bandit sees them on an endpoint, segmented when it has segment_by: for
// "" or AllSegment of a segmented endpoint, AggregateSegment (the sum of its
// segments, InAggregate); otherwise segment itself, "" being AllSegment.
// The router draws from the view's cells and a report adds up the cells
// InView names, so both read the same counts. In particular cells left from
// an earlier segment_by are not part of "all": the AllSegment cells of an
// endpoint that has since become segmented, and the named segments of one
// that no longer is.
func View(segmented bool, segment string) string {
	if segment == "" {
		segment = AllSegment
	}
	if segmented && segment == AllSegment {
		return AggregateSegment
	}
	return segment
}

// InView reports whether the counts of a cell in segment make up view, a
// View result: for AggregateSegment, every segment that belongs in the
// aggregate (what its cells hold, see InAggregate); otherwise view's own.
// An AggregateSegment cell itself is in no view: summing it with the
// segments would count them twice.
func InView(view, segment string) bool {
	if view == AggregateSegment {
		return InAggregate(segment)
	}
	return segment == view && segment != AggregateSegment
}

// AddToAggregate adds trials, successes and reward units just counted on k to the
// endpoint-wide AggregateSegment cell of k's arm, when k's segment belongs
// in it (InAggregate). The aggregate is in memory only: its counts are never
// pending, and Refresh rebuilds it from the segments.
func (t *Table) AddToAggregate(k Key, trials, successes, reward uint64) {
	if !InAggregate(k.Segment) {
		return
	}
	k.Segment = AggregateSegment
	t.Cell(k).AddDurable(trials, successes, reward)
}

func (t *Table) index(endpoint string) *segIndex {
	if x, ok := t.segs.Load(endpoint); ok {
		return x.(*segIndex)
	}
	x, _ := t.segs.LoadOrStore(endpoint, new(segIndex))
	return x.(*segIndex)
}

// Known reports whether segment has cells (or was admitted) in endpoint.
// It takes no lock.
func (t *Table) Known(endpoint, segment string) bool {
	x, ok := t.segs.Load(endpoint)
	if !ok {
		return false
	}
	_, ok = x.(*segIndex).known.Load(segment)
	return ok
}

// SegmentCount is the number of named segments endpoint has.
func (t *Table) SegmentCount(endpoint string) int {
	x, ok := t.segs.Load(endpoint)
	if !ok {
		return 0
	}
	return int(x.(*segIndex).n.Load())
}

// Admit makes segment a known segment of endpoint unless that would give
// the endpoint more than max named segments; it reports whether segment is
// known afterwards. Segments that do not count (see Counted) are always
// admitted.
func (t *Table) Admit(endpoint, segment string, max int) bool {
	x := t.index(endpoint)
	if _, ok := x.known.Load(segment); ok {
		return true
	}
	if !Counted(segment) {
		x.add(segment)
		return true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.known.Load(segment); ok {
		return true
	}
	if int(x.n.Load()) >= max {
		return false
	}
	x.add(segment)
	return true
}

// Segments lists endpoint's segments (without AggregateSegment and
// HoldoutSegment, which are not the bandit's segments), sorted.
// It costs one pass over the endpoint's segments, not over every cell.
func (t *Table) Segments(endpoint string) []string {
	x, ok := t.segs.Load(endpoint)
	if !ok {
		return []string{}
	}
	out := []string{}
	x.(*segIndex).known.Range(func(k, _ any) bool {
		if s := k.(string); s != AggregateSegment && s != HoldoutSegment {
			out = append(out, s)
		}
		return true
	})
	sort.Strings(out)
	return out
}

// Lookup returns the cell for k, or nil when it has never been used.
func (t *Table) Lookup(k Key) *Cell {
	if c, ok := t.m.Load(k); ok {
		return c.(*Cell)
	}
	return nil
}

// DrainPending takes every pending trial delta, leaving them zero. A caller
// that fails to persist them must hand them back with Restore.
func (t *Table) DrainPending() map[Key]uint64 {
	t.mu.Lock()
	cells := t.dirty
	t.dirty = nil
	t.mu.Unlock()
	var out map[Key]uint64
	for _, c := range cells {
		// A cell whose pending count rises from 0 again after this swap is
		// listed anew by AddTrial, so nothing is left behind.
		if n := c.pending.Swap(0); n > 0 {
			if out == nil {
				out = make(map[Key]uint64, len(cells))
			}
			out[c.key] += n
		}
	}
	return out
}

// Pending returns the number of trials counted in memory and not yet
// drained for the store (the flush backlog).
func (t *Table) Pending() uint64 {
	t.mu.Lock()
	cells := t.dirty
	t.mu.Unlock()
	// Appends after the unlock write past len(cells) only; the listed
	// cells are read through their atomics.
	var n uint64
	for _, c := range cells {
		n += c.pending.Load()
	}
	return n
}

// Restore gives back pending deltas that could not be persisted.
func (t *Table) Restore(deltas map[Key]uint64) {
	for k, n := range deltas {
		c := t.Cell(k)
		if c.pending.Add(n) == n {
			t.markDirty(c)
		}
	}
}

// Entry is one key with its counts, as listed by Entries and kept by the
// stores: Successes are the whole ones (clicks), Reward the value rewards
// in RewardUnit units.
type Entry struct {
	Key       Key
	Trials    uint64
	Successes uint64
	Reward    uint64
}

// SuccessCount is the entry's successes by the one rule (Successes).
func (e Entry) SuccessCount() float64 { return Successes(e.Successes, e.Reward) }

// Entries lists the cells of one endpoint (every endpoint when endpoint is
// ""), sorted by segment and arm.
func (t *Table) Entries(endpoint string) []Entry {
	var out []Entry
	t.m.Range(func(k, v any) bool {
		key := k.(Key)
		if endpoint == "" || key.Endpoint == endpoint {
			tr, su, rw := v.(*Cell).Raw()
			out = append(out, Entry{Key: key, Trials: tr, Successes: su, Reward: rw})
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.Endpoint != b.Endpoint {
			return a.Endpoint < b.Endpoint
		}
		if a.Segment != b.Segment {
			return a.Segment < b.Segment
		}
		return a.Arm < b.Arm
	})
	return out
}

// ErrorKey names one class of failures of one arm of an endpoint.
type ErrorKey struct {
	Endpoint string
	Arm      string
	Class    string
}

// Errors counts arm failures by class. The zero value is ready to use and
// safe for concurrent use. Counts live in memory only.
type Errors struct {
	m sync.Map // ErrorKey -> *atomic.Uint64
}

// Add counts one failure.
func (e *Errors) Add(k ErrorKey) {
	if c, ok := e.m.Load(k); ok {
		c.(*atomic.Uint64).Add(1)
		return
	}
	c, _ := e.m.LoadOrStore(k, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(1)
}

// Of returns an endpoint's failure counts by arm and class.
func (e *Errors) Of(endpoint string) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	e.m.Range(func(k, v any) bool {
		key := k.(ErrorKey)
		if key.Endpoint == endpoint {
			if out[key.Arm] == nil {
				out[key.Arm] = map[string]uint64{}
			}
			out[key.Arm][key.Class] = v.(*atomic.Uint64).Load()
		}
		return true
	})
	return out
}

// Disc is a cell's discounted counts: trials and successes seen so far, each
// weighted by 2^(−age/half-life), as of At, plus the raw totals they were
// last brought up to date with.
type Disc struct {
	Trials, Successes float64
	At                time.Time
	RawTrials         uint64
	RawSuccesses      uint64
	RawReward         uint64
}

// discSize is the length of Disc's binary encoding without RawReward;
// discSizeReward with it.
const (
	discSize       = 40
	discSizeReward = 48
)

// errDiscSize is UnmarshalBinary's error for a value of the wrong length.
var errDiscSize = errors.New("counters: discounted counts encoding is not 40 or 48 bytes")

// MarshalBinary returns d's storage encoding, 40 bytes: Trials and
// Successes as float64 bits, At in Unix nanoseconds, then RawTrials and
// RawSuccesses, each 8 bytes big-endian; then, only when RawReward is not
// 0, RawReward in 8 more (so cells without value rewards keep the encoding
// they always had). It never fails.
func (d Disc) MarshalBinary() ([]byte, error) {
	n := discSize
	if d.RawReward != 0 {
		n = discSizeReward
	}
	v := make([]byte, n)
	binary.BigEndian.PutUint64(v[0:], math.Float64bits(d.Trials))
	binary.BigEndian.PutUint64(v[8:], math.Float64bits(d.Successes))
	binary.BigEndian.PutUint64(v[16:], uint64(d.At.UnixNano()))
	binary.BigEndian.PutUint64(v[24:], d.RawTrials)
	binary.BigEndian.PutUint64(v[32:], d.RawSuccesses)
	if n == discSizeReward {
		binary.BigEndian.PutUint64(v[40:], d.RawReward)
	}
	return v, nil
}

// UnmarshalBinary sets d from MarshalBinary's encoding.
func (d *Disc) UnmarshalBinary(v []byte) error {
	if len(v) != discSize && len(v) != discSizeReward {
		return errDiscSize
	}
	*d = Disc{
		Trials:       math.Float64frombits(binary.BigEndian.Uint64(v[0:])),
		Successes:    math.Float64frombits(binary.BigEndian.Uint64(v[8:])),
		At:           time.Unix(0, int64(binary.BigEndian.Uint64(v[16:]))),
		RawTrials:    binary.BigEndian.Uint64(v[24:]),
		RawSuccesses: binary.BigEndian.Uint64(v[32:]),
	}
	if len(v) == discSizeReward {
		d.RawReward = binary.BigEndian.Uint64(v[40:])
	}
	return nil
}

// discState guards a cell's Disc; the lock is per cell, taken only by
// endpoints with a discounted policy.
type discState struct {
	mu sync.Mutex
	d  Disc
	ok bool
}

// Discounted brings the cell's discounted counts up to now and returns
// them. New raw trials and successes since the last call enter at full
// weight (a success is credited when its click arrives, which for a
// half-life of hours or days is close to when it was served). The first call
// starts from the raw totals, or from the state given to RestoreDiscounted.
func (c *Cell) Discounted(now time.Time, halfLife time.Duration) (trials, successes float64) {
	rawT, rawS, rawR := c.Raw()
	c.disc.mu.Lock()
	defer c.disc.mu.Unlock()
	d := &c.disc.d
	if !c.disc.ok {
		*d = Disc{Trials: float64(rawT), Successes: Successes(rawS, rawR), At: now, RawTrials: rawT, RawSuccesses: rawS, RawReward: rawR}
		c.disc.ok = true
		return d.Trials, d.Successes
	}
	if dt := now.Sub(d.At); dt > 0 && halfLife > 0 {
		f := math.Exp2(-float64(dt) / float64(halfLife))
		d.Trials *= f
		d.Successes *= f
		d.At = now
	}
	if rawT > d.RawTrials {
		d.Trials += float64(rawT - d.RawTrials)
	}
	var newS, newR uint64
	if rawS > d.RawSuccesses {
		newS = rawS - d.RawSuccesses
	}
	if rawR > d.RawReward {
		newR = rawR - d.RawReward
	}
	d.Successes += Successes(newS, newR)
	d.RawTrials, d.RawSuccesses, d.RawReward = max(d.RawTrials, rawT), max(d.RawSuccesses, rawS), max(d.RawReward, rawR)
	return d.Trials, d.Successes
}

// DiscState returns the cell's discounted state, false when it has none.
func (c *Cell) DiscState() (Disc, bool) {
	c.disc.mu.Lock()
	defer c.disc.mu.Unlock()
	return c.disc.d, c.disc.ok
}

// RestoreDiscounted sets the cell's discounted state, e.g. from the store at
// start-up.
func (c *Cell) RestoreDiscounted(d Disc) {
	c.disc.mu.Lock()
	c.disc.d, c.disc.ok = d, true
	c.disc.mu.Unlock()
}

// DiscEntry is one cell's discounted state.
type DiscEntry struct {
	Key  Key
	Disc Disc
}

// Loader reads the durable counts, at start-up and, when replicas share a
// store, to refresh the table with the others' counts (Table.Refresh).
// Successes are never ahead of the trials they belong to in what it returns.
type Loader interface {
	LoadCounters(ctx context.Context) ([]Entry, error)
}

// DiscStore keeps snapshots of the discounted counts, so a restart resumes
// the decay where it was instead of from the raw totals. PutDiscounted
// replaces a cell's earlier snapshot; LoadDiscounted returns the latest of
// every cell, skipping malformed ones.
type DiscStore interface {
	PutDiscounted(ctx context.Context, entries []DiscEntry) error
	LoadDiscounted(ctx context.Context) ([]DiscEntry, error)
}

// DiscEntries lists every cell that has discounted state.
func (t *Table) DiscEntries() []DiscEntry {
	var out []DiscEntry
	t.m.Range(func(k, v any) bool {
		if d, ok := v.(*Cell).DiscState(); ok {
			out = append(out, DiscEntry{Key: k.(Key), Disc: d})
		}
		return true
	})
	return out
}

// Refresh sets every listed cell to the shared store's totals plus the
// trials this process counted and has not flushed yet, and recomputes the
// endpoint-wide aggregate cells from the segments. Cells the store does not
// list keep their counts. Used with a store shared by many replicas, whose
// totals include every replica's trials and successes.
func (t *Table) Refresh(entries []Entry) {
	agg := map[Key][3]uint64{}
	for _, e := range entries {
		if e.Key.Segment == AggregateSegment {
			continue
		}
		c := t.Cell(e.Key)
		c.trials.Store(e.Trials + c.pending.Load())
		c.successes.Store(e.Successes)
		c.reward.Store(e.Reward)
	}
	t.m.Range(func(k, v any) bool {
		key := k.(Key)
		if !InAggregate(key.Segment) {
			return true
		}
		tr, su, rw := v.(*Cell).Raw()
		key.Segment = AggregateSegment
		s := agg[key]
		agg[key] = [3]uint64{s[0] + tr, s[1] + su, s[2] + rw}
		return true
	})
	for k, s := range agg {
		c := t.Cell(k)
		c.trials.Store(s[0])
		c.successes.Store(s[1])
		c.reward.Store(s[2])
	}
}
