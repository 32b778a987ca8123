package backend

import (
	"cmp"
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
