package backend

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// CompareItems orders items best first: by score, descending, then by id,
// ascending, so that equal scores rank the same way on every call.
func CompareItems(a, b Item) int {
	if c := cmp.Compare(b.Score, a.Score); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// TopK returns the k best of items (CompareItems) without the ids in
// exclude and without repeated ids (an id keeps its best score). It sorts
// items in place and returns a prefix of it, so the caller's slice is
// reused; nil items give an empty, non-nil list.
func TopK(items []Item, exclude map[string]struct{}, k int) []Item {
	slices.SortFunc(items, CompareItems)
	out := items[:0]
	var seen map[string]struct{}
	for _, it := range items {
		if len(out) == k {
			break
		}
		if _, x := exclude[it.ID]; x {
			continue
		}
		if seen == nil {
			seen = make(map[string]struct{}, min(k, len(items)))
		}
		if _, dup := seen[it.ID]; dup {
			continue
		}
		seen[it.ID] = struct{}{}
		out = append(out, it)
	}
	if out == nil {
		out = []Item{}
	}
	return out
}

// IDs is the ids of a model's scored rows: the request's candidates
// (Strings), or the model's own ids read off the wire (Bytes, which takes
// precedence when non-nil). Row i's id is Strings[i] or Bytes[i].
type IDs struct {
	Strings []string
	Bytes   [][]byte
}

func (l *IDs) cmp(a, b int32) int {
	if l.Bytes != nil {
		return bytes.Compare(l.Bytes[a], l.Bytes[b])
	}
	return strings.Compare(l.Strings[a], l.Strings[b])
}

func (l *IDs) str(i int32) string {
	if l.Bytes != nil {
		return string(l.Bytes[i])
	}
	return l.Strings[i]
}

// in reports whether row i's id is a key of set. The lookup does not
// allocate.
func (l *IDs) in(i int32, set map[string]struct{}) bool {
	if l.Bytes != nil {
		_, ok := set[string(l.Bytes[i])]
		return ok
	}
	_, ok := set[l.Strings[i]]
	return ok
}

// Scores is the scores of a model's rows, in whichever representation the
// backend read them: Len rows, row i scoring At(i).
type Scores interface {
	Len() int
	At(i int) float64
}

type ranked struct {
	score float64
	row   int32
}

// Rank returns the req.K best rows of a model's answer as items, best first:
// by score descending, ties by id ascending (byte order). Rows whose id is in
// req.Exclude are never returned, nor, with onlyCandidates, rows whose id is
// not one of req.Candidates; an id on several rows is returned once, with
// its best score. ids must hold at least scores.Len() ids. Any score that is
// NaN or ±Inf, even a filtered row's, is an error wrapping ErrBadOutput:
// the model is sick, and such a score could not be sent as JSON either.
func Rank(ids IDs, scores Scores, req *Request, onlyCandidates bool) ([]Item, error) {
	var allowed map[string]struct{}
	if onlyCandidates {
		allowed = make(map[string]struct{}, len(req.Candidates))
		for _, c := range req.Candidates {
			allowed[c] = struct{}{}
		}
	}
	better := func(a, b ranked) bool {
		return a.score > b.score || (a.score == b.score && ids.cmp(a.row, b.row) < 0)
	}
	n := scores.Len()
	k := min(req.K, n)
	// A heap of the k best so far, worst at the root.
	h := make([]ranked, 0, max(k, 0))
	for i := range n {
		row := int32(i)
		s := scores.At(i)
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("%w: score of %q is %v", ErrBadOutput, ids.str(row), s)
		}
		if (req.Exclude != nil && ids.in(row, req.Exclude)) || (allowed != nil && !ids.in(row, allowed)) {
			continue
		}
		r := ranked{s, row}
		if len(h) < k {
			h = append(h, r)
			heapUp(h, len(h)-1, better)
		} else if k > 0 && better(r, h[0]) {
			h[0] = r
			heapDown(h, 0, better)
		}
	}
	byRank := func(a, b ranked) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	}
	slices.SortFunc(h, byRank)
	items := make([]Item, len(h))
	for i, r := range h {
		items[i] = Item{ID: ids.str(r.row), Score: r.score}
	}
	if !hasDuplicates(items) {
		return items, nil
	}
	// Rare: a duplicate id pushed another item out of the top k. Rank every
	// row and keep each id's first (best) occurrence.
	all := make([]ranked, 0, n)
	for i := range n {
		row := int32(i)
		if (req.Exclude != nil && ids.in(row, req.Exclude)) || (allowed != nil && !ids.in(row, allowed)) {
			continue
		}
		all = append(all, ranked{scores.At(i), row})
	}
	slices.SortFunc(all, byRank)
	seen := make(map[string]struct{}, k)
	items = items[:0]
	for _, r := range all {
		if len(items) == k {
			break
		}
		if ids.in(r.row, seen) {
			continue
		}
		id := ids.str(r.row)
		seen[id] = struct{}{}
		items = append(items, Item{ID: id, Score: r.score})
	}
	return items, nil
}

// hasDuplicates reports whether two items share an id.
func hasDuplicates(items []Item) bool {
	if len(items) <= 32 {
		for i := range items {
			for j := i + 1; j < len(items); j++ {
				if items[i].ID == items[j].ID {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(items))
	for _, it := range items {
		if _, dup := seen[it.ID]; dup {
			return true
		}
		seen[it.ID] = struct{}{}
	}
	return false
}

// heapUp and heapDown keep h a heap with the worst element (by better) at
// the root.
func heapUp(h []ranked, i int, better func(a, b ranked) bool) {
	for i > 0 {
		p := (i - 1) / 2
		if !better(h[p], h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDown(h []ranked, i int, better func(a, b ranked) bool) {
	for {
		worst := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) && better(h[worst], h[c]) {
				worst = c
			}
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}
