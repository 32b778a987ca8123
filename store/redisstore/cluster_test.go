package redisstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/storetest"
)

// clusterOpts are generous deadlines for six redis-servers on a loaded
// 2-core machine; what goes over them goes to the log, which is also
// correct, only slower.
func clusterOpts(t *testing.T) Options {
	return Options{WALDir: t.TempDir(), CheckInterval: 50 * time.Millisecond, OpTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, DialTimeout: 500 * time.Millisecond}
}

// endpointsOnTwoMasters returns two endpoint names whose keys two
// different masters of c serve.
func endpointsOnTwoMasters(t *testing.T, c *redistest.Cluster, s *Store) (string, string, *redistest.Server, *redistest.Server) {
	t.Helper()
	first := c.MasterOf(s.trialsKey("home"))
	for i := range 100 {
		e := fmt.Sprintf("ep%d", i)
		if m := c.MasterOf(s.trialsKey(e)); m != nil && m != first {
			return "home", e, first, m
		}
	}
	t.Fatal("no endpoint on another master than home's")
	return "", "", nil, nil
}

// TestCluster runs the stores' contract and the shared-state guarantees on
// a Redis Cluster of three masters with a replica each.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster takes seconds to form")
	}
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	ctx := context.Background()
	var n atomic.Int64
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Store {
			opt := clusterOpts(t)
			opt.Prefix = fmt.Sprintf("conf%d:", n.Add(1))
			return openStore(t, c.URL(), opt)
		})
	})

	t.Run("endpoints spread over masters; one batch spans them", func(t *testing.T) {
		opt := clusterOpts(t)
		opt.Prefix = "spread:"
		s := openStore(t, c.URL(), opt)
		e1, e2, m1, m2 := endpointsOnTwoMasters(t, c, s)
		k1 := counters.Key{Endpoint: e1, Segment: "all", Arm: "a@1"}
		k2 := counters.Key{Endpoint: e2, Segment: "all", Arm: "a@1"}
		res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", "p1", k1), click("i", "p2", k2), click("i", "p1", k1)}, map[counters.Key]uint64{k1: 2, k2: 3})
		if err != nil || !res[0].Success || !res[1].Success || !res[2].Duplicate {
			t.Fatalf("a batch over two masters: %+v, %v", res, err)
		}
		for _, tc := range []struct {
			m    *redistest.Server
			key  string
			want string
		}{{m1, s.trialsKey(e1), "2"}, {m2, s.trialsKey(e2), "3"}} {
			got, err := tc.m.Client().HGetAll(ctx, tc.key).Result()
			if err != nil || len(got) != 1 {
				t.Errorf("master %s holds %s = %v, %v; want its one counter there", tc.m.Addr(), tc.key, got, err)
			}
			for _, v := range got {
				if v != tc.want {
					t.Errorf("%s on %s = %s; want %s", tc.key, tc.m.Addr(), v, tc.want)
				}
			}
		}
		if got := countsOf(t, s); got[k1] != [2]uint64{2, 1} || got[k2] != [2]uint64{3, 1} {
			t.Fatalf("counters %v", got)
		}
	})

	t.Run("two replicas count exactly", func(t *testing.T) {
		a, b := twoReplicas(t, c, "two:")
		e1, e2, _, _ := endpointsOnTwoMasters(t, c, a)
		k1 := counters.Key{Endpoint: e1, Segment: "all", Arm: "a@1"}
		k2 := counters.Key{Endpoint: e2, Segment: "s", Arm: "a@2"}
		const workers, each = 4, 50
		var wg sync.WaitGroup
		errs := make(chan error, 2*workers*each)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := []*Store{a, b}[w%2]
				for i := range each {
					// Both replicas send the same events: each counts once.
					ops := []store.FeedbackOp{click("i", fmt.Sprintf("p%d", i), k1), impression(fmt.Sprintf("q%d", i), k2)}
					if _, err := s.ApplyFeedback(ctx, ops, map[counters.Key]uint64{k1: 1}); err != nil {
						errs <- err
					}
					if err := s.AddTrials(ctx, map[counters.Key]uint64{k1: 1, k2: 2}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, s := range []*Store{a, b} {
			if n, _ := s.Backlog(); n != 0 {
				t.Fatalf("%d batches logged with the cluster up", n)
			}
		}
		want := map[counters.Key][2]uint64{k1: {2 * workers * each, each}, k2: {2*workers*each + each, 0}}
		for i, s := range []*Store{a, b} {
			if got := countsOf(t, s); got[k1] != want[k1] || got[k2] != want[k2] {
				t.Fatalf("replica %d reads %v; want %v", i, got, want)
			}
		}
	})

	t.Run("settings checked on every node", func(t *testing.T) {
		var logs logBuffer
		opt := clusterOpts(t)
		opt.Logger = logs.logger()
		openStore(t, c.URL(), opt)
		waitFor(t, "a warning for each node", 10*time.Second, func() bool {
			for _, n := range c.Nodes {
				if len(logs.lines("set appendonly yes", "addr="+n.Addr())) != 1 {
					return false
				}
			}
			return true
		})
	})

	t.Run("registry changes reach every replica", func(t *testing.T) {
		a, b := twoReplicas(t, c, "sub:")
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		changed := b.Subscribe(sctx)
		expectSignal(t, changed, "the subscription taking hold")
		if err := a.Put(ctx, store.Models, "mf@1", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		expectSignal(t, changed, "another replica's Put")
	})
}

// twoReplicas opens two stores on c under prefix, as two gateway replicas
// sharing it would.
func twoReplicas(t *testing.T, c *redistest.Cluster, prefix string) (*Store, *Store) {
	opt := clusterOpts(t)
	opt.Prefix = prefix
	a := openStore(t, c.URL(), opt)
	opt.WALDir = t.TempDir()
	return a, openStore(t, c.URL(), opt)
}

func expectSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no change signal after %s", what)
	}
}

// TestClusterFailoverLosesNoAcknowledgedWrite runs two replicas of the
// store on a cluster while they write trials and clicks of two endpoints
// on different masters without pause, kills one of those masters with
// SIGKILL mid-stream and lets the cluster promote its replica. No write
// fails meanwhile (it goes to the write-ahead log); once the logs have
// replayed, every acknowledged trial and click is counted exactly once;
// and the registry, its notices, API keys and their revocation, and rate
// limits work on the promoted master.
func TestClusterFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes seconds")
	}
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	ctx := context.Background()
	stores := []*Store{openStore(t, c.URL(), clusterOpts(t)), openStore(t, c.URL(), clusterOpts(t))}
	for _, s := range stores {
		waitFor(t, "the store to see every master's replica", 10*time.Second, func() bool {
			m := s.clusterReplicas.Load()
			return m != nil && len(*m) == 3 && (*m)[c.Nodes[0].Addr()] == 1 && (*m)[c.Nodes[1].Addr()] == 1 && (*m)[c.Nodes[2].Addr()] == 1
		})
	}
	e1, e2, victim, _ := endpointsOnTwoMasters(t, c, stores[0])
	k1 := counters.Key{Endpoint: e1, Segment: "all", Arm: "a@1"}
	k2 := counters.Key{Endpoint: e2, Segment: "all", Arm: "a@1"}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := stores[1].Subscribe(sctx)
	expectSignal(t, changed, "the subscription taking hold")

	load := startWriters(stores, map[counters.Key]uint64{k1: 1, k2: 1}, func(n int64) []store.FeedbackOp {
		return []store.FeedbackOp{click("i", fmt.Sprintf("p%da", n), k1), click("i", fmt.Sprintf("p%db", n), k2)}
	})
	defer load.halt()
	trials, clicks := &load.trials, &load.clicks

	waitFor(t, "writes before the failover", 20*time.Second, func() bool { return clicks.Load() >= 200 })
	victim.Stop() // SIGKILL
	killedAt := clicks.Load()
	var promoted *redistest.Server
	waitFor(t, "the cluster to promote the replica", 30*time.Second, func() bool {
		promoted = c.MasterOf(stores[0].trialsKey(e1))
		return promoted != nil && promoted != victim
	})
	waitFor(t, "both stores writing to the new master", 30*time.Second, func() bool {
		return stores[0].Healthy() && stores[1].Healthy()
	})
	after := clicks.Load()
	waitFor(t, "writes after the failover", 20*time.Second, func() bool { return clicks.Load() >= after+200 })
	for _, err := range load.halt() {
		t.Error(err)
	}
	t.Logf("master %s killed after %d clicks; %s promoted; %d clicks and %d trials acknowledged in all", victim.Addr(), killedAt, promoted.Addr(), clicks.Load(), trials.Load())

	for i, s := range stores {
		waitFor(t, fmt.Sprintf("store %d's log replayed", i), 30*time.Second, func() bool {
			n, _ := s.Backlog()
			return n == 0 && s.Healthy()
		})
	}
	want := [2]uint64{uint64(trials.Load()), uint64(clicks.Load())}
	for i, s := range stores {
		if got := countsOf(t, s); got[k1] != want || got[k2] != want {
			t.Fatalf("store %d reads %v after the failover; want %v for both endpoints (trials, successes)", i, got, want)
		}
	}

	// The shared state beyond counters works on the promoted master.
	a, b := stores[0], stores[1]
	if err := a.Put(ctx, store.Endpoints, e1, []byte(`{"name":"x"}`)); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, changed, "a registry change after the failover")
	if m, err := b.List(ctx, store.Endpoints); err != nil || string(m[e1]) != `{"name":"x"}` {
		t.Fatalf("the other replica lists %q, %v", m, err)
	}
	_, h := auth.Generate()
	if err := a.PutKey(ctx, auth.Key{Name: "app", Hash: h, Scopes: []string{"client"}, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if found, err := a.DeleteKey(ctx, "app"); err != nil || !found {
		t.Fatalf("revoking a key: %v, %v", found, err)
	}
	if keys, err := b.ListKeys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("the other replica lists keys %+v, %v after the revocation", keys, err)
	}
	for _, bucket := range []string{"rl:" + e1, "rl:" + e2} {
		got, _, err := a.TakeTokens(ctx, bucket, 1, 2, 5)
		if err != nil || got != 2 {
			t.Fatalf("rate limit %s: %d tokens, %v; want the burst of 2", bucket, got, err)
		}
		got, retry, err := b.TakeTokens(ctx, bucket, 1, 2, 1)
		if err != nil || got != 0 || retry <= 0 {
			t.Fatalf("rate limit %s on the other replica: %d tokens, retry %v, %v; want none left", bucket, got, retry, err)
		}
	}
}
