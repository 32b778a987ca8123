package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/shadow"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

// stateStore is what the gateway keeps its state in: the embedded store in the
// data dir, or Redis shared by replicas. It is the union of what the gateway's
// parts declare they need of a store, one concern each.
type stateStore interface {
	registry.Store
	feedback.Store
	report.Series
	audit.Store
	counters.Loader
	counters.DiscStore
	counters.LinearStore
	offpolicy.Store
	auth.Store
	shadow.Store
	metaStore
	Close() error
}

// metaStore keeps the data dir's own facts: which config entries were
// seeded (Meta, SetMeta) and the token signing key, created once and the
// same for every caller afterwards.
type metaStore interface {
	Meta(ctx context.Context, key string) ([]byte, error)
	SetMeta(ctx context.Context, key string, val []byte) error
	SigningKey(ctx context.Context) ([]byte, error)
}

// sharedStore is a stateStore other replicas write too; it also shares the
// rate limits' buckets between them.
type sharedStore interface {
	stateStore
	offpolicy.Others
	auth.Taker
	Subscribe(ctx context.Context) <-chan struct{}
	Healthy() bool
	Backlog() (batches int, bytes int64)
}

var (
	_ stateStore  = (*store.DB)(nil)
	_ sharedStore = (*redisstore.Store)(nil)
)

// openedStore is the store the gateway runs on and what kind it is, so that
// the parts that differ between the kinds test a field, not the store's
// dynamic type. Exactly one of shared and embedded is set for a store
// openStore opened; a test's own store may set neither.
type openedStore struct {
	stateStore
	// shared is the same store when other replicas write it too (Redis).
	shared sharedStore
	// embedded is the same store when it is the data dir's: it holds the
	// data dir's lock, so the command line reaches this server through
	// the admin socket instead.
	embedded *store.DB
}

// embeddedStore is the data dir's store db as an openedStore.
func embeddedStore(db *store.DB) openedStore { return openedStore{stateStore: db, embedded: db} }

// redisStore is the Redis store rs as an openedStore.
func redisStore(rs *redisstore.Store) openedStore { return openedStore{stateStore: rs, shared: rs} }

// RedisLogger sends go-redis's own log lines to Log at debug level; the
// zero value discards them. go-redis keeps one logger per process: install
// it once at start-up, with redis.SetLogger. Safe for concurrent use.
type RedisLogger struct{ Log *slog.Logger }

// Printf logs one go-redis line.
func (l RedisLogger) Printf(_ context.Context, format string, v ...any) {
	if l.Log != nil {
		l.Log.Debug("redis: " + fmt.Sprintf(format, v...))
	}
}

// openStore opens Redis when the config names it, else the data dir's
// embedded store.
func openStore(ctx context.Context, cfg *config.Config, dataDir string, log *slog.Logger) (openedStore, error) {
	if cfg.RedisURL == "" {
		db, err := store.Open(dataDir)
		if err != nil {
			return openedStore{}, err
		}
		return embeddedStore(db), nil
	}
	id, err := replicaID(dataDir)
	if err != nil {
		return openedStore{}, err
	}
	rs, err := redisstore.Open(ctx, cfg.RedisURL, redisstore.Options{
		WALDir: filepath.Join(dataDir, "redis-wal"), WALMaxBytes: cfg.Redis.WALMaxBytes,
		PoolSize: cfg.Redis.PoolSize, OpTimeout: cfg.Redis.Timeout, Logger: log, ReplicaID: id,
	})
	if err != nil {
		return openedStore{}, fmt.Errorf("redis: %w", err)
	}
	return redisStore(rs), nil
}

// replicaID is this replica's id in the shared store, made once and kept
// in the data dir, so a restarted replica takes up its own sums again.
func replicaID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "replica-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("replica id: %w", err)
	}
	return id, nil
}

// runShared keeps this replica in step with the others until ctx ends:
// posteriors (counts and linear sums) refreshed from Redis every
// redis.refresh_interval, the
// registry reloaded on every change notice and at least every second, and
// the other replicas' off-policy sums every two seconds. A Redis outage
// leaves the last values in place.
func (g *Gateway) runShared(ctx context.Context) {
	sh := g.db.shared
	if sh == nil {
		return
	}
	refresh := time.NewTicker(g.cfg.Redis.RefreshInterval)
	defer refresh.Stop()
	reload := time.NewTicker(time.Second)
	defer reload.Stop()
	others := time.NewTicker(2 * time.Second)
	defer others.Stop()
	changes := sh.Subscribe(ctx)
	var since time.Time // zero: every touched minute at the first read
	call := func(f func(ctx context.Context) error, what string) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := f(cctx); err != nil && ctx.Err() == nil {
			g.log.Debug("shared state: "+what, "err", err)
		}
	}
	reloadRegistry := func(ctx context.Context) error {
		_, err := g.reg.Reload(ctx)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			call(func(ctx context.Context) error {
				entries, err := sh.LoadCounters(ctx)
				if err == nil {
					g.table.Refresh(entries)
				}
				return err
			}, "refreshing counters")
			call(func(ctx context.Context) error {
				sums, err := sh.LoadLinear(ctx)
				if err == nil {
					g.table.RefreshLinear(sums)
				}
				return err
			}, "refreshing linear sums")
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			call(reloadRegistry, "reloading the registry")
		case <-reload.C:
			call(reloadRegistry, "reloading the registry")
		case now := <-others.C:
			call(func(ctx context.Context) error {
				sums, err := sh.OffPolicyOthers(ctx, since)
				if err != nil {
					return err
				}
				g.offp.SetOthers(sums)
				since = now.Add(-5 * time.Second) // overlap: a touch may land while we read
				return nil
			}, "reading other replicas' off-policy sums")
		}
	}
}
