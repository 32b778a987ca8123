package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

var (
	_ auth.Store = (*store.DB)(nil)
	_ auth.Store = (*redisstore.Store)(nil)
	_ auth.Taker = (*redisstore.Store)(nil)
)

// wireAuth makes the server's API keys and rate limiter (shared through
// Redis when the store is Redis); with auth.mode keys they are enforced.
// Both are nil when the store keeps no keys.
func wireAuth(ctx context.Context, cfg *config.Config, db stateStore, log *slog.Logger) (*auth.Keys, *api.Auth, error) {
	st, ok := db.(auth.Store)
	if !ok {
		if cfg.Auth.Mode == config.AuthKeys {
			return nil, nil, errors.New("auth.mode keys: this store keeps no API keys")
		}
		return nil, nil, nil
	}
	keys, err := auth.NewKeys(ctx, st, log)
	if err != nil {
		return nil, nil, fmt.Errorf("load API keys: %w", err)
	}
	var lim auth.Limiter = auth.NewLocalLimiter()
	if t, ok := db.(auth.Taker); ok {
		sl := auth.NewSharedLimiter(t)
		sl.OnError = func(err error) { log.Debug("shared rate limit unavailable; limiting per process", "err", err) }
		lim = sl
	}
	enforce := cfg.Auth.Mode == config.AuthKeys
	if enforce && keys.Len() == 0 {
		log.Warn("auth mode is keys but no API key exists: every call but /healthz, /readyz and /metrics is refused; " +
			"create one with: modelgate keys create --name root --scope admin (with --data-dir or --redis-url, while the server runs or not)")
	}
	return keys, &api.Auth{Keys: keys, Limiter: lim, Enforce: enforce}, nil
}

// runKeys keeps the key cache fresh until ctx ends (see auth.Keys.Run).
func (g *Gateway) runKeys(ctx context.Context) {
	if g.keys == nil {
		return
	}
	var changes <-chan struct{}
	if sh, ok := g.db.(sharedStore); ok {
		changes = sh.Subscribe(ctx)
	}
	g.keys.Run(ctx, changes)
}

// AdminSocketName is the admin socket's name in the data dir: a running
// gateway on the embedded store takes API key changes there
// (api.AdminRequest, one JSON object per connection).
const AdminSocketName = "admin.sock"

// listenAdmin opens the admin socket of a server running on dataDir,
// readable and writable by its owner only. The caller holds the data dir's
// lock, so a socket file already there is stale (left by a server that was
// killed) and is replaced.
func listenAdmin(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, AdminSocketName)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}
