package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/internal/redistest"
)

func TestKeysStore(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := openStore(t, srv.URL(), onlineOpts())
	b := openStore(t, srv.URL(), onlineOpts())
	ctx := context.Background()
	changes := b.Subscribe(ctx)
	_, h := auth.Generate()
	k := auth.Key{Name: "app1", Hash: h, Scopes: []string{"client"}, Rate: 10, Burst: 20, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	if err := a.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := a.PutKey(ctx, k); err != auth.ErrExists {
		t.Fatalf("duplicate: %v", err)
	}
	select {
	case <-changes:
	case <-time.After(2 * time.Second):
		t.Fatal("no change notice")
	}
	used := time.Now().UTC().Truncate(time.Millisecond)
	if err := a.TouchKeys(ctx, map[string]time.Time{"app1": used, "ghost": used}); err != nil {
		t.Fatal(err)
	}
	all, err := b.ListKeys(ctx)
	if err != nil || len(all) != 1 || all[0].Hash != h || all[0].Name != "app1" || !all[0].LastUsed.Equal(used) || all[0].Burst != 20 {
		t.Fatalf("list: %+v %v", all, err)
	}
	if ok, err := b.DeleteKey(ctx, "app1"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, _ := b.DeleteKey(ctx, "app1"); ok {
		t.Fatal("deleted twice")
	}
	if all, _ := a.ListKeys(ctx); len(all) != 0 {
		t.Fatalf("after delete: %+v", all)
	}
}

func TestTakeTokensGCRA(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := openStore(t, srv.URL(), onlineOpts())
	b := openStore(t, srv.URL(), onlineOpts())
	ctx := context.Background()
	// Full at first: the burst, then nothing, with a wait of about 1/rate.
	got, _, err := a.TakeTokens(ctx, "rl:t1", 10, 5, 3)
	if err != nil || got != 3 {
		t.Fatalf("first lease: %d %v", got, err)
	}
	got, _, _ = b.TakeTokens(ctx, "rl:t1", 10, 5, 3)
	if got != 2 {
		t.Fatalf("second lease: %d, want the 2 left", got)
	}
	got, retry, _ := a.TakeTokens(ctx, "rl:t1", 10, 5, 1)
	if got != 0 || retry <= 0 || retry > 100*time.Millisecond {
		t.Fatalf("empty bucket: %d, retry %v", got, retry)
	}
	time.Sleep(retry + 5*time.Millisecond)
	if got, _, _ := b.TakeTokens(ctx, "rl:t1", 10, 5, 1); got != 1 {
		t.Fatalf("after the wait: %d", got)
	}
	// Concurrent replicas at 100/s burst 10 for 1 s: about 110 in all.
	var total atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(time.Second)
	for _, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				n, _, err := s.TakeTokens(ctx, "rl:t2", 100, 10, 2)
				if err != nil {
					t.Error(err)
					return
				}
				total.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	if n := total.Load(); n < 100 || n > 115 {
		t.Fatalf("%d tokens in 1 s at 100/s burst 10, want about 110", n)
	}
}
