package gateway

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
)

// DefaultConfigPoll is how often a config file that manages the registry
// (registry.managed: config) is read for changes.
const DefaultConfigPoll = 5 * time.Second

// configWatch re-applies the config file's models and endpoints when the
// file's content changes (a Kubernetes ConfigMap update, a deploy). It
// reads the file every poll; a file that does not parse, or can no longer
// be read, is logged and changes nothing. Only the registry's entries are
// re-applied: other settings take effect at the next start.
type configWatch struct {
	path string
	poll time.Duration
	reg  *registry.Registry
	log  *slog.Logger
	last [sha256.Size]byte // the content last applied or refused
}

// newConfigWatch watches cfg's file, from the content cfg was loaded
// from: start-up has applied that already.
func newConfigWatch(cfg *config.Config, poll time.Duration, reg *registry.Registry, log *slog.Logger) *configWatch {
	if poll <= 0 {
		poll = DefaultConfigPoll
	}
	return &configWatch{path: cfg.Path, poll: poll, reg: reg, log: log, last: cfg.Digest}
}

// run checks the file every poll until ctx ends.
func (w *configWatch) run(ctx context.Context) {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check(ctx)
		}
	}
}

func (w *configWatch) check(ctx context.Context) {
	raw, err := os.ReadFile(w.path)
	if err != nil {
		w.log.Warn("config file unreadable; keeping the applied entries", "path", w.path, "err", err)
		return
	}
	sum := sha256.Sum256(raw)
	if sum == w.last {
		return
	}
	cfg, err := config.Parse(raw, filepath.Dir(w.path))
	if err != nil {
		w.last = sum // the same content would fail again
		w.log.Error("config file changed but is invalid; keeping the applied entries", "path", w.path, "err", err)
		return
	}
	if cfg.Registry.Managed != config.ManagedConfig {
		w.last = sum
		w.log.Warn("config file no longer says registry.managed: config; restart to hand its entries to the API", "path", w.path)
		return
	}
	n, err := applyConfig(ctx, w.reg, cfg)
	if err != nil {
		if fault.As(err) != nil {
			w.last = sum // refused by validation: nothing applied, and it would be again
		} // else the store failed: try again at the next poll
		w.log.Error("config file changed; applying it failed", "path", w.path, "changed", n, "err", err)
		return
	}
	w.last = sum
	w.log.Info("config file changed; its models and endpoints applied", "path", w.path, "changed", n)
}

// applyConfig makes the registry hold cfg's models and endpoints and own
// them (registry.managed: config), as the config's actor in the audit log.
func applyConfig(ctx context.Context, reg *registry.Registry, cfg *config.Config) (int, error) {
	vs := make([]registry.ConfigVersion, len(cfg.Models))
	for i, m := range cfg.Models {
		vs[i] = registry.ConfigVersion{Name: m.Name, Version: m.Version, Body: m.Body}
	}
	es := make([]registry.ConfigEndpoint, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		es[i] = registry.ConfigEndpoint{Name: e.Name, Body: e.Body}
	}
	return reg.ApplyConfig(audit.WithActor(ctx, "config"), vs, es)
}
