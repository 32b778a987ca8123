// Package backendtest is a backend driver for the tests of packages that
// register and serve versions (registry, router, api, lifecycle) without a
// real model runtime.
package backendtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

// Spec is the config of a Driver's versions: a path, which the driver does
// not read, and the timeout every backend has.
type Spec struct {
	Path      string `json:"path,omitempty"`
	TimeoutMS int    `json:"timeout_ms,omitempty"`
}

// Check accepts any spec.
func (*Spec) Check() error { return nil }

// Timeout is TimeoutMS as a duration.
func (s *Spec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// Driver is a backend of type Name whose versions Loader builds. Its span
// is "backend.predict". Safe for concurrent use when Loader is.
type Driver struct {
	Name   string
	Loader func(ctx context.Context, s *Spec, opt backend.LoadOptions) (backend.Scorer, error)
}

// Type is d.Name.
func (d Driver) Type() string { return d.Name }

// NewConfig returns a new *Spec.
func (Driver) NewConfig() backend.Config { return new(Spec) }

// SpanName is "backend.predict".
func (Driver) SpanName() string { return "backend.predict" }

// Load calls d.Loader.
func (d Driver) Load(ctx context.Context, cfg backend.Config, opt backend.LoadOptions) (backend.Scorer, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("backendtest: config %T is not a *Spec", cfg)
	}
	return d.Loader(ctx, s, opt)
}

// Ranked is the answer a backend owes for rows with the given ids and
// scores: best first (backend.TopK: score descending, ties by id), without
// the ids in exclude nor repeats, at most k. Tests of remote backends
// compare Predict against it.
func Ranked(ids []string, score func(id string) float64, exclude []string, k int) []backend.Item {
	items := make([]backend.Item, len(ids))
	for i, id := range ids {
		items[i] = backend.Item{ID: id, Score: score(id)}
	}
	skip := make(map[string]struct{}, len(exclude))
	for _, id := range exclude {
		skip[id] = struct{}{}
	}
	return backend.TopK(items, skip, k)
}

// Plan parses a feature spec, failing the test on an error.
func Plan(t testing.TB, spec string) *featurizer.Plan {
	t.Helper()
	p, err := featurizer.Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ListingDriver is a Driver whose backend publishes versions, so that an
// endpoint may watch its models with auto_arms: Versions lists them.
type ListingDriver struct {
	Driver
	Versions func(ctx context.Context, s *Spec, version string) ([]string, error)
}

// ListVersions calls d.Versions.
func (d ListingDriver) ListVersions(ctx context.Context, cfg backend.Config, version string) ([]string, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("backendtest: config %T is not a *Spec", cfg)
	}
	return d.Versions(ctx, s, version)
}

// ConfigAt returns a copy of cfg: the test backend's versions share it.
func (ListingDriver) ConfigAt(cfg backend.Config, _ string) (backend.Config, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("backendtest: config %T is not a *Spec", cfg)
	}
	c := *s
	return &c, nil
}
