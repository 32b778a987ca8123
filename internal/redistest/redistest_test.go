package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
