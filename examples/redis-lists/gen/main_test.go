package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/internal/testenv"
)

func demoModel(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "demo", "models", "mf", "2")
}

// What gen writes, piped through redis-cli --pipe as load.sh does, is a
// list per user of the first -users users holding the model's own top k,
// and a popular list; running it twice replaces the lists.
func TestWriteThroughRedisCLI(t *testing.T) {
	cli := testenv.LookPath(t, "Debian: apt-get install redis-tools", "redis-cli")
	srv := redistest.Start(t, redistest.Options{})
	var cmds bytes.Buffer
	if err := write(&cmds, demoModel(t), "recs:b:n:", 3, 5); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		pipe := exec.Command(cli, "-u", srv.URL(), "--pipe")
		pipe.Stdin = bytes.NewReader(cmds.Bytes())
		if out, err := pipe.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("errors: 0")) {
			t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
		}
	}
	rdb := srv.Client()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 4 {
		t.Fatalf("keys %v, %v: want u0, u1, u2 and popular", keys, err)
	}
	m, err := embedded.Load(demoModel(t))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := featurizer.Parse([]byte(embedded.DefaultSpec))
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := plan.Build(&featurizer.Request{UserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Predict(ctx, &backend.Request{Inputs: inputs, K: 5})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rdb.ZRevRangeWithScores(ctx, "recs:b:n:u1", 0, -1).Result()
	if err != nil || len(got) != 5 {
		t.Fatalf("u1's list: %v, %v", got, err)
	}
	for i, z := range got {
		if z.Member != want[i].ID || z.Score != want[i].Score {
			t.Fatalf("u1's list %v, want the model's top 5 %v", got, want)
		}
	}
	if n, err := rdb.ZCard(ctx, "recs:b:n:popular").Result(); err != nil || n != 5 {
		t.Fatalf("popular list: %d entries, %v", n, err)
	}
}
