package redisstore

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/redistest"
)

// logBuffer is a slog text handler's output, safe to read while the store
// writes to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the lines holding every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		all := l != ""
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestStartupWarnsOfRedisSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  redistest.Options
		warn []string // settings warned of
		note string   // a debug line that shows the check ran
	}{
		{"no AOF", redistest.Options{}, []string{"appendonly"}, ""},
		{"eviction", redistest.Options{AOF: true, Args: []string{"--maxmemory-policy", "allkeys-lru"}}, []string{"maxmemory-policy"}, ""},
		{"both", redistest.Options{Args: []string{"--maxmemory-policy", "volatile-ttl"}}, []string{"appendonly", "maxmemory-policy"}, ""},
		{"as required", redistest.Options{AOF: true}, nil, "redis settings as required"},
		{"CONFIG renamed", redistest.Options{Args: []string{"--rename-command", "CONFIG", ""}}, nil, "could not check the redis settings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, tc.opt)
			var logs logBuffer
			opt := fastOpts(t.TempDir())
			opt.Logger = logs.logger()
			s := openStore(t, srv.URL(), opt)
			if tc.note != "" {
				waitFor(t, "the debug line "+tc.note, 10*time.Second, func() bool { return len(logs.lines(tc.note)) > 0 })
			}
			for _, name := range tc.warn {
				waitFor(t, "a warning of "+name, 10*time.Second, func() bool { return len(logs.lines("level=WARN", "setting="+name)) > 0 })
			}
			// Every warning of one check is logged by then; the store
			// works as usual whatever the settings.
			waitFor(t, "the store healthy", 10*time.Second, s.Healthy)
			warns := logs.lines("level=WARN")
			if len(warns) != len(tc.warn) {
				t.Fatalf("%d warnings; want %d (of %v):\n%s", len(warns), len(tc.warn), tc.warn, logs.String())
			}
			for _, name := range tc.warn {
				want := map[string]string{"appendonly": "required=yes", "maxmemory-policy": "required=noeviction"}[name]
				if l := logs.lines("level=WARN", "setting="+name, want); len(l) != 1 {
					t.Fatalf("no warning naming %s and %s:\n%s", name, want, logs.String())
				}
			}
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Fatalf("an error was logged:\n%s", logs.String())
			}
		})
	}
}

// TestSettingsCheckedAgainAfterOutage restarts the server with AOF turned
// off (as a failover to a replica configured differently would find it):
// the store warns once it answers again.
func TestSettingsCheckedAgainAfterOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AOF: true})
	var logs logBuffer
	opt := fastOpts(t.TempDir())
	opt.Logger = logs.logger()
	s := openStore(t, srv.URL(), opt)
	waitFor(t, "the first check", 10*time.Second, func() bool { return len(logs.lines("redis settings as required")) > 0 })
	srv.Stop()
	waitFor(t, "the store to see the outage", 10*time.Second, func() bool { return !s.Healthy() })
	srv.RestartWithArgs("--appendonly", "no")
	waitFor(t, "a warning of appendonly after the outage", 10*time.Second, func() bool {
		return len(logs.lines("level=WARN", "setting=appendonly")) > 0
	})
}
