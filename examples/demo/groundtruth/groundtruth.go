// Package groundtruth is the simulated world behind the bundled demo: the
// true taste of every demo user and the true appeal of every demo item, and
// the click model that turns them into click probabilities. The demo's
// traffic generator uses it to decide which shown items a simulated user
// clicks, and tests use it to compute how good each demo model really is.
//
// # Click model
//
// Each user u and item i has a true latent vector (16 dimensions, each
// component roughly normal with standard deviation 0.5, so the affinity
// ⟨u, i⟩ of a random pair has mean 0 and standard deviation about 1). A user
// shown item i clicks it with probability
//
//	p(u, i) = 1 / (1 + exp(-(Alpha + Beta·⟨u, i⟩)))
//
// independently of the other items shown. A random item is clicked about 1%
// of the time, a user's best items about 4%. A served list of 10 is a
// success when at least one of its items is clicked, which happens with
// probability 1 − Π(1 − p(u, i)): about 0.09 for a random list, 0.12 for
// the poor demo model mf@1, 0.30 for the good mf@2 and 0.34 for the best
// possible list.
//
// The data is written by ../gen (go generate ./examples/demo/...), from a
// fixed seed, so it is the same on every machine.
package groundtruth

//go:generate go run ../gen -out ..

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/modelgate/modelgate/backend/embedded/npy"
)

// The click model's constants (see the package documentation).
const (
	// Alpha sets the base rate: a pair with zero affinity is clicked
	// with probability 1/(1+e^4.8) ≈ 0.8%.
	Alpha = -4.8
	// Beta is how strongly affinity raises the click probability.
	Beta = 0.6
)

// The files of a truth directory, laid out like an embedding/v1 model
// without model.json (so it cannot be registered by mistake).
const (
	UsersFile   = "users.npy"
	UserIDsFile = "users.txt"
	ItemsFile   = "items.npy"
	ItemIDsFile = "items.txt"
)

// Truth holds the true latent vectors. It is immutable after Load and safe
// for concurrent use. The zero value knows no users or items: every click
// probability is 0.
type Truth struct {
	dim     int
	userIDs []string
	itemIDs []string
	users   map[string][]float32
	items   map[string][]float32
}

// Load reads the truth files in dir (examples/demo/truth).
func Load(dir string) (*Truth, error) {
	userIDs, users, err := readTable(dir, UsersFile, UserIDsFile)
	if err != nil {
		return nil, err
	}
	itemIDs, items, err := readTable(dir, ItemsFile, ItemIDsFile)
	if err != nil {
		return nil, err
	}
	if users.Cols != items.Cols {
		return nil, fmt.Errorf("%s: %d columns but %s has %d", UsersFile, users.Cols, ItemsFile, items.Cols)
	}
	t := &Truth{dim: items.Cols, userIDs: userIDs, itemIDs: itemIDs,
		users: make(map[string][]float32, len(userIDs)), items: make(map[string][]float32, len(itemIDs))}
	for i, id := range userIDs {
		t.users[id] = users.Row(i)
	}
	for i, id := range itemIDs {
		t.items[id] = items.Row(i)
	}
	return t, nil
}

func readTable(dir, npyName, txtName string) ([]string, *npy.Matrix, error) {
	m, err := npy.ReadFile(filepath.Join(dir, npyName))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", npyName, err)
	}
	f, err := os.Open(filepath.Join(dir, txtName))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", txtName, err)
	}
	defer f.Close()
	var ids []string
	seen := make(map[string]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id := sc.Text()
		if id == "" || seen[id] {
			return nil, nil, fmt.Errorf("%s: empty or duplicate id %q", txtName, id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", txtName, err)
	}
	if len(ids) != m.Rows {
		return nil, nil, fmt.Errorf("%s: %d ids but %s has %d rows", txtName, len(ids), npyName, m.Rows)
	}
	return ids, m, nil
}

// Users returns the ids of the demo users ("u0", "u1", …) in file order.
// The slice is shared: do not modify it.
func (t *Truth) Users() []string { return t.userIDs }

// Items returns the ids of the demo items ("i0", "i1", …) in file order.
// The slice is shared: do not modify it.
func (t *Truth) Items() []string { return t.itemIDs }

// ClickProb is the probability that user clicks item when it is shown to
// them (see the package documentation). An unknown user or item is never
// clicked: 0.
func (t *Truth) ClickProb(user, item string) float64 {
	u, ok := t.users[user]
	if !ok {
		return 0
	}
	v, ok := t.items[item]
	if !ok {
		return 0
	}
	var aff float64
	for j, x := range u {
		aff += float64(x) * float64(v[j])
	}
	return 1 / (1 + math.Exp(-(Alpha + Beta*aff)))
}

// SuccessProb is the probability that user clicks at least one of items
// when shown the list: 1 − Π(1 − ClickProb), clicks being independent.
func (t *Truth) SuccessProb(user string, items []string) float64 {
	miss := 1.0
	for _, it := range items {
		miss *= 1 - t.ClickProb(user, it)
	}
	return 1 - miss
}
