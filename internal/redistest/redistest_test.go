package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/internal/testenv"
)

func TestRestartKeepsWhatTheAOFHolds(t *testing.T) {
	tests := []struct {
		name     string
		opt      Options
		wantKept bool
	}{
		{"aof always", Options{AOF: true, AppendFsync: FsyncAlways}, true},
		{"aof everysec", Options{AOF: true, AppendFsync: FsyncEverySec}, true}, // kill -9 of the process, not of the machine
		{"no persistence", Options{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := Start(t, tc.opt)
			c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DisableIdentity: true})
			defer c.Close()
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			port := srv.Addr()
			srv.Stop()
			if srv.Running() {
				t.Fatal("Running after Stop")
			}
			if err := c.Ping(ctx).Err(); err == nil {
				t.Fatal("PING answered after Stop")
			}
			srv.Restart()
			if srv.Addr() != port {
				t.Fatalf("restarted on %s, want %s", srv.Addr(), port)
			}
			var got string
			var err error
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if got, err = c.Get(ctx, "k").Result(); err == nil || err == redis.Nil {
					break
				}
			}
			if kept := err == nil && got == "v"; kept != tc.wantKept {
				t.Fatalf("after restart GET k = %q, %v; want kept=%v", got, err, tc.wantKept)
			}
		})
	}
}

func TestDebugSleepIsEnabled(t *testing.T) {
	srv := Start(t, Options{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	defer c.Close()
	if err := c.Do(context.Background(), "DEBUG", "SLEEP", "0").Err(); err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
}

// TestSentinelFailsOver kills the master: the sentinels promote the
// replica, which holds what the master had, and a failover client of the
// URL writes to it.
func TestSentinelFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := StartSentinel(t, SentinelOptions{Server: Options{AOF: true, AppendFsync: FsyncAlways}})
	if got := s.MasterAddr(); got != s.Master.Addr() {
		t.Fatalf("sentinels name %q as the master, want %s", got, s.Master.Addr())
	}
	m := s.Master.Client()
	if err := m.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx, 1, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	s.Master.Stop()
	testenv.WaitFor(t, 20*time.Second, func() bool { return s.MasterAddr() == s.Replica.Addr() })
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: []string{s.Sentinels[0].Addr()}, MaxRetries: -1})
	defer c.Close()
	testenv.WaitFor(t, 10*time.Second, func() bool { return c.Set(ctx, "k2", "v2", 0).Err() == nil })
	if v, err := c.Get(ctx, "k").Result(); v != "v" {
		t.Fatalf("k on the promoted replica: %q, %v", v, err)
	}
	if !strings.HasPrefix(s.URL(), "redis+sentinel://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/mymaster/0") {
		t.Fatalf("URL %s", s.URL())
	}
}

// TestCluster starts a cluster and checks that keys of different hash
// tags are served by different masters, and that a key is readable
// through a cluster client after its master's replica is promoted.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster takes seconds to form")
	}
	c := StartCluster(t, ClusterOptions{})
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes; want 6", len(c.Nodes))
	}
	a, b := c.MasterOf("{a}"), c.MasterOf("{b}")
	if a == nil || b == nil || a == b {
		t.Fatalf("masters of {a} and {b}: %v, %v; want two different nodes", a, b)
	}
	ctx := context.Background()
	cc := c.Client()
	if err := cc.Set(ctx, "{a}x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cc.Do(ctx, "WAIT", 1, 1000).Err(); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := c.MasterOf("{a}"); m != nil && m != a {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica promoted within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		cc.ReloadState(ctx) // a dead node's errors alone do not make go-redis reload the slot map
		v, err := cc.Get(ctx, "{a}x").Result()
		if err == nil {
			if v != "1" {
				t.Fatalf("after the failover {a}x = %q", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reading after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
