// Package lifecycle runs the endpoints' auto_arms watchers: it finds new
// versions of a watched model where they are published (a new numeric
// directory in TF Serving's layout next to an embedded version, or a new
// AVAILABLE version in TF Serving), registers them like the model's newest
// registered version, adds them as arms, and drains (pauses) arms whose
// version has disappeared.
package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
)

// Registry is what the watcher changes.
type Registry interface {
	Snapshot() *registry.Snapshot
	PutVersion(ctx context.Context, name, version string, body []byte) (*registry.ModelVersion, bool, error)
	AddArm(ctx context.Context, endpoint, arm string) (*registry.Endpoint, error)
	PauseArm(ctx context.Context, endpoint, arm, reason string) (*registry.Endpoint, error)
}

// Watcher polls the publishers of every endpoint with auto_arms. Create it
// with New; Run it once.
type Watcher struct {
	reg     Registry
	drivers Drivers
	log     *slog.Logger
	tick    time.Duration

	mu   sync.Mutex // guards last; held by Run's goroutine only between polls
	last map[string]time.Time
}

// Drivers finds the driver of a backend type (backend.Drivers). A model
// can be watched when its driver implements backend.Lister.
type Drivers interface {
	Lookup(typ string) (backend.Driver, bool)
}

// New returns a watcher that lists versions through drivers. log may be nil.
func New(reg Registry, drivers Drivers, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Watcher{reg: reg, drivers: drivers, log: log, tick: 250 * time.Millisecond, last: map[string]time.Time{}}
}

// Run polls until ctx ends, each endpoint at its own interval.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, ep := range w.reg.Snapshot().Endpoints {
				if ep.AutoArms == nil {
					continue
				}
				w.mu.Lock()
				due := now.Sub(w.last[ep.Name]) >= ep.AutoArms.Interval.Std()
				if due {
					w.last[ep.Name] = now
				}
				w.mu.Unlock()
				if due {
					if err := w.Poll(ctx, ep.Name); err != nil {
						w.log.Warn("auto_arms poll failed", "endpoint", ep.Name, "err", err)
					}
				}
			}
		}
	}
}

// Poll checks one endpoint's watched model once.
func (w *Watcher) Poll(ctx context.Context, endpoint string) error {
	ctx = audit.WithActor(ctx, "auto_arms")
	snap := w.reg.Snapshot()
	ep, ok := snap.Endpoints[endpoint]
	if !ok || ep.AutoArms == nil {
		return nil
	}
	model := ep.AutoArms.Model
	tmpl := snap.Newest(model)
	if tmpl == nil {
		return fmt.Errorf("model %s has no registered version", model)
	}
	d, _ := w.drivers.Lookup(tmpl.Backend.Type)
	lister, ok := d.(backend.Lister)
	if !ok || tmpl.Backend.Config == nil {
		return fmt.Errorf("backend %s cannot be watched", tmpl.Backend.Type)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	published, err := lister.ListVersions(lctx, tmpl.Backend.Config, tmpl.Version)
	cancel()
	if err != nil {
		return fmt.Errorf("list versions of %s: %w", model, err) // never drain on a failed listing
	}
	// The newest version among the endpoint's arms of this model: only
	// versions after it are added, so an arm removed on purpose stays out.
	newestArm := ""
	for _, arm := range ep.Arms {
		if name, v, _ := registry.SplitArm(arm); name == model && (newestArm == "" || registry.VersionLess(newestArm, v)) {
			newestArm = v
		}
	}
	var errs []error
	for _, v := range published {
		arm := model + "@" + v
		if slices.Contains(ep.Arms, arm) || (newestArm != "" && !registry.VersionLess(newestArm, v)) {
			continue
		}
		if _, ok := snap.Versions[arm]; !ok {
			body, err := versionBody(lister, tmpl, v)
			if err == nil {
				_, _, err = w.reg.PutVersion(ctx, model, v, body)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("register %s: %w", arm, err))
				continue
			}
			w.log.Info("auto_arms registered a new version", "endpoint", endpoint, "arm", arm)
		}
		if _, err := w.reg.AddArm(ctx, endpoint, arm); err != nil {
			if f := fault.As(err); f == nil || f.Code != "arm_exists" {
				errs = append(errs, fmt.Errorf("add arm %s: %w", arm, err))
			}
			continue
		}
		w.log.Info("auto_arms added an arm", "endpoint", endpoint, "arm", arm)
	}
	for _, arm := range ep.Arms {
		name, v, _ := registry.SplitArm(arm)
		if name != model || slices.Contains(published, v) || ep.ArmStates[arm] == registry.Paused {
			continue
		}
		reason := fmt.Sprintf("drained by auto_arms: version %s of %s is no longer published", v, model)
		if _, err := w.reg.PauseArm(ctx, endpoint, arm, reason); err != nil {
			errs = append(errs, fmt.Errorf("drain %s: %w", arm, err))
			continue
		}
		w.log.Warn("auto_arms drained an arm whose version disappeared", "endpoint", endpoint, "arm", arm)
	}
	return errors.Join(errs...)
}

// versionBody is the template's registration body for version v.
func versionBody(lister backend.Lister, tmpl *registry.ModelVersion, v string) ([]byte, error) {
	cfg, err := lister.ConfigAt(tmpl.Backend.Config, v)
	if err != nil {
		return nil, err
	}
	b := registry.BackendSpec{Type: tmpl.Backend.Type, Config: cfg}
	meta := map[string]any{"registered_by": "auto_arms", "copied_from": tmpl.Arm}
	return json.Marshal(map[string]any{"backend": b, "features": tmpl.Features, "metadata": meta})
}
