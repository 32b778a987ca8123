package backend

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/modelgate/modelgate/featurizer"
)

// Scorer computes one loaded version's rankings. Implementations are safe
// for concurrent use; one that holds resources (connections, goroutines)
// also implements io.Closer, and is closed when its version is replaced,
// removed or the gateway stops.
type Scorer interface {
	Predict(ctx context.Context, req *Request) ([]Item, error)
}

// BatchScorer is implemented by Scorers that score several requests in one
// model call: their tensors stacked along the leading (batch) dimension,
// or one pass over an item matrix. PredictBatch returns one list per
// request, in order, each what Predict would return for that request
// alone. An error is the whole call's and comes with no list: the caller
// then scores the requests one by one, so that a refused input or a sick
// output is attributed to its own request. Requests that cannot be stacked
// (their tensors' shapes differ beyond the batch dimension) get
// ErrNotStackable, before any model call.
type BatchScorer interface {
	Scorer
	PredictBatch(ctx context.Context, reqs []*Request) ([][]Item, error)
}

// ErrNotStackable is a BatchScorer's answer to requests it cannot score in
// one call.
var ErrNotStackable = errors.New("the requests' inputs cannot be stacked into one batch")

// Config is one version's backend section decoded by its driver: a pointer
// to the driver's own struct, which only the driver reads. It encodes back
// (encoding/json) to the section it was decoded from, "type" aside, so a
// stored record keeps its shape.
type Config interface {
	// Check validates a config decoded from a registration body and fills
	// in its defaults (an absolute path, the default signature). Its
	// errors are *fault.Error values naming the field (backend.path) with
	// the code the user sees (missing_field, invalid_backend, …). A stored
	// config is not checked again.
	Check() error
	// Timeout is the deadline of one scoring call on the request path; 0
	// leaves the caller's default.
	Timeout() time.Duration
}

// LoadOptions tells a driver how to load one version.
type LoadOptions struct {
	// Model and Version name the version (its arm is Model@Version).
	Model, Version string
	// Validate is true at registration: the backend must be reachable and
	// match the config, or the version is refused. At start-up and on a
	// reload it is false: a remote backend that is down yields an
	// unhealthy Scorer, not an error.
	Validate bool
	// Plan is the version's parsed feature spec; its Inputs are what the
	// model must accept.
	Plan *featurizer.Plan
}

// Driver is one backend type: it owns the type's config (NewConfig), loads
// a version into a Scorer and names the span of a model call. A driver may
// also implement Lister (auto_arms) and DefaultSpec (versions registered
// without a feature spec). Implementations are safe for concurrent use.
type Driver interface {
	// Type is the backend's "type" in a version's backend section, e.g.
	// "tfserving".
	Type() string
	// NewConfig returns a new zero config for a backend section to be
	// decoded into.
	NewConfig() Config
	// Load builds the Scorer of one version from its config (as NewConfig
	// returned it, decoded and, at registration, checked). Errors the user
	// should see are *fault.Error values naming the field; any other error
	// is reported against "backend".
	Load(ctx context.Context, cfg Config, opt LoadOptions) (Scorer, error)
	// SpanName names the span of one model call on the request path, e.g.
	// "tfserving.predict".
	SpanName() string
}

// Lister is implemented by drivers that can find the versions of a model a
// backend publishes, which is what an endpoint's auto_arms watches.
type Lister interface {
	// ListVersions returns the versions published now, in ascending
	// order, given the config and the version name of the model's newest
	// registered version. ctx bounds the call.
	ListVersions(ctx context.Context, cfg Config, version string) ([]string, error)
	// ConfigAt returns a copy of cfg pointing at the published version v;
	// cfg itself is not changed.
	ConfigAt(cfg Config, v string) (Config, error)
}

// DefaultSpec is implemented by drivers whose versions may be registered
// without a feature spec (or with no inputs): such a version gets the
// driver's spec.
type DefaultSpec interface {
	DefaultSpec() []byte
}

// Drivers is the set of backend types a gateway serves, built once by the
// wiring and read-only afterwards: safe for concurrent use. A nil *Drivers
// knows no types.
type Drivers struct {
	byType map[string]Driver
	types  []string
}

// NewDrivers returns the set of ds. Two drivers of one type are a
// programming error, and panic.
func NewDrivers(ds ...Driver) *Drivers {
	s := &Drivers{byType: make(map[string]Driver, len(ds))}
	for _, d := range ds {
		t := d.Type()
		if _, dup := s.byType[t]; dup {
			panic(fmt.Sprintf("backend: two drivers of type %q", t))
		}
		s.byType[t] = d
		s.types = append(s.types, t)
	}
	sort.Strings(s.types)
	return s
}

// Lookup returns the driver of backend type typ.
func (s *Drivers) Lookup(typ string) (Driver, bool) {
	if s == nil {
		return nil, false
	}
	d, ok := s.byType[typ]
	return d, ok
}

// Types lists the known backend types, sorted, for error messages. The
// caller must not change the slice.
func (s *Drivers) Types() []string {
	if s == nil {
		return nil
	}
	return s.types
}
