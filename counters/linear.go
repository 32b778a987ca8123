package counters

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/modelgate/modelgate/bandit"
)

// Linear sums: the sufficient statistics of a linear-thompson arm
// (bandit's sums layout: n, Σ r, b = Σ r·x, the upper triangle of Σ xxᵀ),
// per (endpoint, arm, context layout), kept like the counts: in memory,
// with the part not yet in the store kept as a pending delta that a flush
// drains (≤ the flush interval), and a refresh from a shared store sets
// the totals to the store's plus what is still pending here. They are sums,
// so adding every replica's deltas in any order gives the same totals.

// LinKey names one arm's linear sums under one context vector layout
// (registry.LinearModel.Layout): a new layout starts from no evidence.
type LinKey struct {
	Endpoint string
	Arm      string
	Layout   uint32
}

// Encode returns k's storage encoding, endpoint NUL arm NUL the layout in 8
// hex digits: the key of its sums in the data dir and their field prefix
// in Redis.
func (k LinKey) Encode() string {
	return fmt.Sprintf("%s\x00%s\x00%08x", k.Endpoint, k.Arm, k.Layout)
}

// DecodeLinKey parses LinKey.Encode's encoding; false when s is not one.
func DecodeLinKey(s string) (LinKey, bool) {
	parts := strings.Split(s, "\x00")
	if len(parts) != 3 || len(parts[2]) != 8 {
		return LinKey{}, false
	}
	l, err := strconv.ParseUint(parts[2], 16, 32)
	if err != nil {
		return LinKey{}, false
	}
	return LinKey{Endpoint: parts[0], Arm: parts[1], Layout: uint32(l)}, true
}

// LinCell holds one LinKey's sums and its fitted posterior. Its methods are
// safe for concurrent use; the request path takes the cell's own lock only
// to add a trial (O(d²) adds), never a table-wide one.
type LinCell struct {
	key   LinKey
	table *Table
	d     int

	mu      sync.Mutex
	sums    []float64 // everything known: stored totals plus pending
	pending []float64 // added here and not yet drained; nil when none
	changed bool      // sums changed since the last fit

	fit atomic.Pointer[linFit]
}

// linFit is a posterior fitted from a cell's sums with one λ.
type linFit struct {
	lambda float64
	arm    *bandit.LinearArm
}

// Linear returns the cell of k for d-dimensional contexts, creating an
// empty one on first use. The caller bounds the keys: the endpoints' arms
// under their current layouts.
func (t *Table) Linear(k LinKey, d int) *LinCell {
	if c, ok := t.lin.Load(k); ok {
		return c.(*LinCell)
	}
	c, _ := t.lin.LoadOrStore(k, &LinCell{key: k, table: t, d: d, sums: make([]float64, bandit.LinearSumsLen(d))})
	return c.(*LinCell)
}

// LookupLinear returns the cell of k, or nil when it has never been used.
func (t *Table) LookupLinear(k LinKey) *LinCell {
	if c, ok := t.lin.Load(k); ok {
		return c.(*LinCell)
	}
	return nil
}

// Dims is the cell's context dimension.
func (c *LinCell) Dims() int { return c.d }

// AddTrial counts a trial of context x (len(x) = Dims; other lengths, from
// a layout mix-up, are ignored).
func (c *LinCell) AddTrial(x []float64) {
	c.add(x, func(s []float64) { bandit.AddTrial(s, x) })
}

// AddReward counts a reward r of context x (len(x) = Dims).
func (c *LinCell) AddReward(x []float64, r float64) {
	c.add(x, func(s []float64) { bandit.AddReward(s, x, r) })
}

func (c *LinCell) add(x []float64, f func(sums []float64)) {
	if len(x) != c.d {
		return
	}
	c.mu.Lock()
	f(c.sums)
	fresh := c.pending == nil
	if fresh {
		c.pending = make([]float64, len(c.sums))
	}
	f(c.pending)
	c.changed = true
	c.mu.Unlock()
	if fresh {
		c.table.markLinDirty(c)
	}
}

// markLinDirty lists c for the next DrainLinear: its pending delta went
// from none to some.
func (t *Table) markLinDirty(c *LinCell) {
	t.linMu.Lock()
	t.linDirty = append(t.linDirty, c)
	t.linMu.Unlock()
}

// Sums returns a copy of the cell's sums.
func (c *LinCell) Sums() []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sums)
}

// Posterior returns the arm's posterior under ridge prior lambda as last
// fitted (Refit), fitting it now only when there is none yet for this
// lambda: a request never pays for more than the first fit. It returns nil
// (the prior) when the sums cannot be fitted (corrupt).
func (c *LinCell) Posterior(lambda float64) *bandit.LinearArm {
	if f := c.fit.Load(); f != nil && f.lambda == lambda {
		return f.arm
	}
	return c.refit(lambda)
}

// refit fits the sums with lambda and keeps the result.
func (c *LinCell) refit(lambda float64) *bandit.LinearArm {
	c.mu.Lock()
	sums := slices.Clone(c.sums)
	c.changed = false
	c.mu.Unlock()
	arm, err := bandit.FitLinear(c.d, lambda, sums)
	if err != nil {
		arm = nil
	}
	c.fit.Store(&linFit{lambda: lambda, arm: arm})
	return arm
}

// Refit refits every cell whose sums changed since its last fit, with the
// λ it was last fitted with (cells never asked for a posterior are left
// alone). O(d³) each: called by the flush loop, off the request path, so
// the posterior a request reads is at most one flush interval old.
func (t *Table) Refit() {
	t.lin.Range(func(_, v any) bool {
		c := v.(*LinCell)
		f := c.fit.Load()
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		if f != nil && changed {
			c.refit(f.lambda)
		}
		return true
	})
}

// DrainLinear takes every pending linear delta, leaving none. A caller
// that fails to persist them hands them back with RestoreLinear.
func (t *Table) DrainLinear() map[LinKey][]float64 {
	t.linMu.Lock()
	cells := t.linDirty
	t.linDirty = nil
	t.linMu.Unlock()
	var out map[LinKey][]float64
	for _, c := range cells {
		c.mu.Lock()
		p := c.pending
		c.pending = nil
		c.mu.Unlock()
		if p != nil {
			if out == nil {
				out = make(map[LinKey][]float64, len(cells))
			}
			out[c.key] = p
		}
	}
	return out
}

// cellFor returns k's cell for a vector of sums, nil when the vector's
// length is no sums length or not the cell's.
func (t *Table) cellFor(k LinKey, sums []float64) *LinCell {
	d := bandit.LinearDims(len(sums))
	if d < 0 {
		return nil
	}
	if c := t.Linear(k, d); len(c.sums) == len(sums) {
		return c
	}
	return nil
}

// RestoreLinear gives back drained deltas that could not be persisted:
// they are pending again (the sums already hold them).
func (t *Table) RestoreLinear(deltas map[LinKey][]float64) {
	for k, delta := range deltas {
		c := t.cellFor(k, delta)
		if c == nil {
			continue
		}
		c.mu.Lock()
		fresh := c.pending == nil
		if fresh {
			c.pending = delta
		} else if len(c.pending) == len(delta) {
			for i, v := range delta {
				c.pending[i] += v
			}
		}
		c.mu.Unlock()
		if fresh {
			t.markLinDirty(c)
		}
	}
}

// RefreshLinear sets every listed cell's sums to the store's totals plus
// what is still pending here, and refits the cells whose sums changed.
// Entries whose length is not a valid sums length are skipped; cells the
// store does not list keep their sums.
func (t *Table) RefreshLinear(stored map[LinKey][]float64) {
	for k, s := range stored {
		c := t.cellFor(k, s)
		if c == nil {
			continue
		}
		c.mu.Lock()
		same := true
		for i, v := range s {
			if c.pending != nil {
				v += c.pending[i]
			}
			if c.sums[i] != v {
				c.sums[i], same = v, false
			}
		}
		if !same {
			c.changed = true
		}
		c.mu.Unlock()
	}
	t.Refit()
}

// LinearStore keeps the linear sums: AddLinear adds deltas (exactly once
// each, whoever else adds to the same keys), LoadLinear returns the
// totals. The embedded store and Redis implement it.
type LinearStore interface {
	AddLinear(ctx context.Context, deltas map[LinKey][]float64) error
	LoadLinear(ctx context.Context) (map[LinKey][]float64, error)
}

// LinEntry is one cell as LinearEntries lists it.
type LinEntry struct {
	Key  LinKey
	Sums []float64
}

// LinearEntries lists the cells of one endpoint under one layout, sorted
// by arm, with a copy of their sums.
func (t *Table) LinearEntries(endpoint string, layout uint32) []LinEntry {
	var out []LinEntry
	t.lin.Range(func(k, v any) bool {
		key := k.(LinKey)
		if key.Endpoint == endpoint && key.Layout == layout {
			out = append(out, LinEntry{Key: key, Sums: v.(*LinCell).Sums()})
		}
		return true
	})
	slices.SortFunc(out, func(a, b LinEntry) int { return strings.Compare(a.Key.Arm, b.Key.Arm) })
	return out
}
