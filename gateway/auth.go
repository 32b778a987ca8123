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
)

// wireAuth makes the server's API keys and rate limiter (shared through
// Redis when the store is Redis); with auth.mode keys they are enforced.
// The keys' last write of last-use times runs on final, the shutdown's
// context, so that it ends by the shutdown deadline.
func wireAuth(ctx context.Context, cfg *config.Config, db openedStore, log *slog.Logger, final func() context.Context) (*auth.Keys, *api.Auth, error) {
	keys, err := auth.NewKeys(ctx, db, log, auth.KeysOptions{FinalContext: final})
	if err != nil {
		return nil, nil, fmt.Errorf("load API keys: %w", err)
	}
	var lim auth.Limiter = auth.NewLocalLimiter()
	if db.shared != nil {
		sl := auth.NewSharedLimiter(db.shared)
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

// runKeys keeps the key cache fresh until ctx ends (see auth.Keys.Run),
// told of changes by the other replicas when the store is shared.
func (g *Gateway) runKeys(ctx context.Context) {
	var changes <-chan struct{}
	if g.db.shared != nil {
		changes = g.db.shared.Subscribe(ctx)
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
