// Command gen is the demo's nightly batch job: it ranks the catalogue of an
// embedding/v1 model for each of the first -users users of the model, keeps
// the top -k of each as a sorted set, and adds a popular list (the items
// with the highest mean score over all the model's users) for everyone
// else. It writes the lists as Redis commands in the protocol redis-cli
// --pipe reads; each list is written to a temporary key and renamed into
// place, so a reader sees the old list or the new one, never half of one.
//
// Usage, from the repository root (examples/redis-lists/load.sh runs it):
//
//	go run ./examples/redis-lists/gen [-model examples/demo/models/mf/2] [-users 200] [-k 100] | redis-cli --pipe
//
// The demo's users are u0…u399: with -users 200 the batch "saw" only the
// first half of them last night, and the second half get the popular list.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/featurizer"
)

func main() {
	model := flag.String("model", "examples/demo/models/mf/2", "embedding/v1 model directory that ranks the items")
	users := flag.Int("users", 200, "how many of the model's users get a list of their own")
	k := flag.Int("k", 100, "items per list")
	prefix := flag.String("prefix", "recs:batch:nightly:", "key prefix; a user's list is at PREFIX+user id, the popular one at PREFIX+\"popular\"")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	if err := write(w, *model, *prefix, *users, *k); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write writes the lists of the model in dir as Redis commands to w.
func write(w io.Writer, dir, prefix string, users, k int) error {
	m, err := embedded.Load(dir)
	if err != nil {
		return err
	}
	ids, err := readLines(filepath.Join(dir, "users.txt"))
	if err != nil {
		return err
	}
	plan, err := featurizer.Parse([]byte(embedded.DefaultSpec))
	if err != nil {
		return err
	}
	if users > len(ids) {
		users = len(ids)
	}
	sum := map[string]float64{}
	for i, u := range ids {
		inputs, err := plan.Build(&featurizer.Request{UserID: u})
		if err != nil {
			return err
		}
		// Every item, for the popular list's means.
		items, err := m.Predict(context.Background(), &backend.Request{Inputs: inputs, K: 1 << 20})
		if err != nil {
			return fmt.Errorf("user %s: %w", u, err)
		}
		for _, it := range items {
			sum[it.ID] += it.Score
		}
		if i < users {
			if err := zset(w, prefix+u, items[:min(k, len(items))]); err != nil {
				return err
			}
		}
	}
	popular := make([]backend.Item, 0, len(sum))
	for id, s := range sum {
		popular = append(popular, backend.Item{ID: id, Score: s / float64(len(ids))})
	}
	slices.SortFunc(popular, backend.CompareItems)
	return zset(w, prefix+"popular", popular[:min(k, len(popular))])
}

// zset writes the commands that replace key with a sorted set of items:
// built under a temporary key, then renamed into place.
func zset(w io.Writer, key string, items []backend.Item) error {
	tmp := key + ":loading"
	if err := command(w, "DEL", tmp); err != nil {
		return err
	}
	args := []string{"ZADD", tmp}
	for _, it := range items {
		args = append(args, strconv.FormatFloat(it.Score, 'g', -1, 64), it.ID)
	}
	if err := command(w, args...); err != nil {
		return err
	}
	return command(w, "RENAME", tmp, key)
}

// command writes one command in the Redis protocol (an array of bulk
// strings), which carries any bytes.
func command(w io.Writer, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func readLines(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(raw)), nil
}
