package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
)

// filterItemsRef is filterItems' rule written plainly, with one set of the
// ids kept.
func filterItemsRef(items []backend.Item, cands []string, excl map[string]struct{}, k int) []backend.Item {
	out := []backend.Item{}
	seen := map[string]bool{}
	for _, it := range items {
		if len(out) == k {
			break
		}
		if _, x := excl[it.ID]; x || seen[it.ID] || (cands != nil && !slices.Contains(cands, it.ID)) {
			continue
		}
		seen[it.ID] = true
		out = append(out, it)
	}
	return out
}

// Duplicates are dropped the same way below and above the number of kept
// items where filterItems switches from a scan to a set, including
// duplicates of items kept before the switch.
func TestFilterItems(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		n, ids, k int
		cands     bool
	}{
		{0, 1, 10, false},
		{5, 3, 10, false},
		{20, 20, 10, false},
		{40, 10, 100, false},
		{linearDedup + 1, linearDedup + 1, 100, false},
		{100, 30, 100, false},
		{100, 30, 25, true},
		{1000, 200, 1000, false},
		{1000, 200, 1000, true},
	} {
		t.Run(fmt.Sprintf("n=%d,ids=%d,k=%d,cands=%v", tc.n, tc.ids, tc.k, tc.cands), func(t *testing.T) {
			for round := 0; round < 20; round++ {
				items := make([]backend.Item, tc.n)
				for i := range items {
					items[i] = backend.Item{ID: fmt.Sprint("i", rng.IntN(tc.ids)), Score: float64(i)}
				}
				var cands []string
				if tc.cands {
					for i := 0; i < tc.ids; i += 2 {
						cands = append(cands, fmt.Sprint("i", i))
					}
				}
				excl := map[string]struct{}{"i1": {}}
				want := filterItemsRef(items, cands, excl, tc.k)
				got := filterItems(slices.Clone(items), cands, excl, tc.k)
				if !slices.Equal(got, want) {
					t.Fatalf("filterItems = %v, want %v", got, want)
				}
				if got == nil {
					t.Fatal("filterItems returned nil, want an empty list")
				}
			}
		})
	}
}
