// Package registry holds the model versions and endpoints: it validates and
// persists changes and publishes an immutable Snapshot that the request path
// reads through one atomic pointer load.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/store"
)

// Store is the durable home of registry records. Update is a
// compare-and-set on one record: f gets the latest stored value (nil when
// there is none) and returns the value to store (nil deletes it); the
// result is written only if the record has not changed since f was given
// it, else f runs again on the newer value (a bounded number of times).
// An error from f aborts the change and comes back as it is.
type Store interface {
	Update(ctx context.Context, b store.Bucket, key string, f func(cur []byte) ([]byte, error)) ([]byte, error)
	List(ctx context.Context, b store.Bucket) (map[string][]byte, error)
}

// Version is a registered version with its parsed feature plan and loaded
// scorer. Scorer is nil when the version could not be loaded at start-up
// (its arm is then unavailable). SpanName names the span of a model call,
// as the version's driver says. Immutable once published.
type Version struct {
	Spec     ModelVersion
	Plan     *featurizer.Plan
	Scorer   backend.Scorer
	LoadErr  error
	SpanName string
}

// Snapshot is one immutable view of the registry. Safe for concurrent use.
type Snapshot struct {
	Versions  map[string]*Version  // by arm id "name@version"
	Endpoints map[string]*Endpoint // by name
}

// Registry is the live registry. Changes are serialized within a process,
// and each is a compare-and-set on the stored record, so changes made at
// the same time by other processes sharing the store are kept too; reads
// go through Snapshot. Safe for concurrent use.
type Registry struct {
	mu      sync.Mutex // serializes changes, never held on the request path
	audit   *audit.Log
	db      Store
	drivers *backend.Drivers
	snap    atomic.Pointer[Snapshot]
	writes  atomic.Uint64 // changes stored by this registry, for Reload
	now     func() time.Time
	log     *slog.Logger
	// managed is what the config file owns (ApplyConfig); nil when the
	// store owns everything.
	managed atomic.Pointer[managedSet]
	// Replaced scorers are closed after RetireGrace, so that calls in
	// flight on them finish (retire); Close ends the wait (done) and
	// joins those goroutines (retiring).
	done      chan struct{}
	closeOnce sync.Once
	retiring  sync.WaitGroup
}

// RetireGrace is how long a replaced version's backend stays open for the
// calls already made on it: longer than any call's deadline.
const RetireGrace = 30 * time.Second

// Options are a Registry's optional collaborators. The zero value records
// no audit log.
type Options struct {
	// Audit, when set, records every change to versions and endpoints.
	Audit *audit.Log
}

// New returns a registry over db whose versions are decoded and loaded by
// drivers, filled from what db holds. A stored version that no longer loads
// (or whose backend type has no driver) stays registered but unavailable,
// and is logged. log may be nil.
func New(ctx context.Context, db Store, drivers *backend.Drivers, log *slog.Logger, opts Options) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Registry{db: db, drivers: drivers, now: time.Now, log: log, audit: opts.Audit, done: make(chan struct{})}
	s := &Snapshot{Versions: map[string]*Version{}, Endpoints: map[string]*Endpoint{}}
	models, err := db.List(ctx, store.Models)
	if err != nil {
		return nil, fmt.Errorf("load models: %w", err)
	}
	for key, raw := range models {
		mv, err := decodeVersion(raw)
		if err != nil {
			return nil, fmt.Errorf("load model %s: %w", key, err)
		}
		v, err := r.build(ctx, mv, false)
		if err != nil {
			log.Error("model version unavailable", "arm", mv.Arm, "err", err)
			v = &Version{Spec: *mv, LoadErr: err}
		}
		s.Versions[mv.Arm] = v
	}
	eps, err := db.List(ctx, store.Endpoints)
	if err != nil {
		return nil, fmt.Errorf("load endpoints: %w", err)
	}
	for key, raw := range eps {
		ep, err := decodeEndpoint(raw)
		if err != nil {
			return nil, fmt.Errorf("load endpoint %s: %w", key, err)
		}
		s.Endpoints[ep.Name] = ep
	}
	r.snap.Store(s)
	return r, nil
}

// Snapshot returns the current immutable view.
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// build decodes the backend config of a stored mv (when a registration
// has not already), parses the spec and loads the scorer.
func (r *Registry) build(ctx context.Context, mv *ModelVersion, validate bool) (*Version, error) {
	if err := r.decodeBackend(mv); err != nil {
		return nil, err
	}
	d, ok := r.drivers.Lookup(mv.Backend.Type)
	if !ok {
		return nil, r.drivers.Unsupported(mv.Backend.Type)
	}
	plan, err := parseSpec(d, mv)
	if err != nil {
		return nil, err
	}
	sc, err := d.Load(ctx, mv.Backend.Config, backend.LoadOptions{Model: mv.Name, Version: mv.Version, Validate: validate, Plan: plan})
	if err != nil {
		if fault.As(err) != nil {
			return nil, err
		}
		return nil, fault.Field("backend", "invalid_model", "%v", err)
	}
	return &Version{Spec: *mv, Plan: plan, Scorer: sc, SpanName: d.SpanName()}, nil
}

// decodeBackend decodes the config of a stored version's backend with its
// type's driver; a spec already decoded is kept.
func (r *Registry) decodeBackend(mv *ModelVersion) error {
	b := &mv.Backend
	if b.Config != nil {
		return nil
	}
	cfg, err := r.drivers.Decode(b.Type, b.raw)
	if err != nil {
		return err
	}
	b.Config, b.raw = cfg, nil
	return nil
}

// parseSpec parses a version's feature spec; a version without inputs
// whose driver has a default spec gets it.
func parseSpec(d backend.Driver, mv *ModelVersion) (*featurizer.Plan, error) {
	raw := []byte(mv.Features)
	if ds, ok := d.(backend.DefaultSpec); ok && (isEmptyJSON(raw) || isNoInputs(raw)) {
		raw = ds.DefaultSpec()
	}
	plan, err := featurizer.Parse(raw)
	if err != nil {
		var fe *featurizer.FieldError
		if errors.As(err, &fe) {
			field := "features"
			if fe.Field != "" {
				field += "." + fe.Field
			}
			return nil, fault.Field(field, "invalid_feature_spec", "%s", fe.Message)
		}
		return nil, fault.Field("features", "invalid_feature_spec", "%v", err)
	}
	return plan, nil
}

// isNoInputs reports whether a spec is exactly {"inputs": {}} (or null).
func isNoInputs(raw []byte) bool {
	var s map[string]map[string]json.RawMessage
	if json.Unmarshal(raw, &s) != nil || len(s) != 1 {
		return false
	}
	in, ok := s["inputs"]
	return ok && len(in) == 0
}

func isEmptyJSON(b []byte) bool {
	s := string(b)
	return len(b) == 0 || s == "null" || s == "{}"
}

// publish copies the current snapshot, applies f, and stores the result.
func (r *Registry) publish(f func(s *Snapshot)) {
	old := r.snap.Load()
	s := &Snapshot{Versions: make(map[string]*Version, len(old.Versions)), Endpoints: make(map[string]*Endpoint, len(old.Endpoints))}
	for k, v := range old.Versions {
		s.Versions[k] = v
	}
	for k, v := range old.Endpoints {
		s.Endpoints[k] = v
	}
	f(s)
	r.snap.Store(s)
}

// Close closes the backend of every loaded version (TF Serving health
// polls, ONNX batchers) and waits for their goroutines. Call it at shutdown,
// after the last request; the registry serves nothing after.
func (r *Registry) Close() {
	r.closeOnce.Do(func() { close(r.done) })
	r.retiring.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.snap.Load().Versions {
		if v.Scorer != nil {
			closeScorer(v.Scorer)
		}
	}
}

// retire closes the scorer of a version that a new one replaced, once the
// calls in flight on it have had RetireGrace to finish (a TF Serving
// connection closed under them would fail them, and count against the
// arm), or at Close.
func (r *Registry) retire(sc backend.Scorer) {
	if _, ok := sc.(io.Closer); !ok {
		return
	}
	r.retiring.Add(1)
	go func() {
		defer r.retiring.Done()
		t := time.NewTimer(RetireGrace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.done:
		}
		closeScorer(sc)
	}()
}

func closeScorer(sc backend.Scorer) {
	if c, ok := sc.(io.Closer); ok {
		_ = c.Close()
	}
}

// usedBy returns the endpoints whose arms, fallback or shadows name arm.
func (s *Snapshot) usedBy(arm string) []string {
	var out []string
	for name, ep := range s.Endpoints {
		if slices.Contains(ep.Arms, arm) || ep.Fallback == arm || slices.ContainsFunc(ep.Shadows, func(sh Shadow) bool { return sh.Arm == arm }) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ParseVersion validates a registration body — names, fields, backend
// settings and the feature spec — without loading the model or storing
// anything.
func (r *Registry) ParseVersion(name, version string, body []byte) (*ModelVersion, error) {
	if !ValidName(name) {
		return nil, fault.Field("model", "invalid_name", "must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit")
	}
	if !ValidVersion(version) {
		return nil, fault.Field("version", "invalid_version", "must be 1-64 of A-Z a-z 0-9 . _ - and start with a letter or digit")
	}
	// Name an unavailable backend type before strict decoding trips over
	// that backend's own fields.
	var loose struct {
		Backend struct {
			Type string `json:"type"`
		} `json:"backend"`
	}
	if fault.PeekJSON(body, &loose) && loose.Backend.Type != "" {
		if _, ok := r.drivers.Lookup(loose.Backend.Type); !ok {
			return nil, r.drivers.Unsupported(loose.Backend.Type)
		}
	}
	var in versionWire
	if err := fault.DecodeJSON(body, &in); err != nil {
		return nil, err
	}
	switch in.Backend.Kind() {
	case 0, 'n':
		return nil, fault.Field("backend", "missing_field", "required")
	case '{':
	default:
		// The error the body's decoding gives a backend that is not an
		// object, naming its kind.
		var typed struct {
			Backend  struct{}       `json:"backend"`
			Features jsontext.Value `json:"features"`
			Metadata jsontext.Value `json:"metadata"`
		}
		if err := fault.DecodeJSON(body, &typed); err != nil {
			return nil, err
		}
		return nil, fault.Field("backend", "invalid_type", "expected an object")
	}
	typ, cfg, err := r.drivers.Parse(in.Backend)
	if err != nil {
		return nil, err
	}
	mv := &ModelVersion{Name: name, Version: version, Arm: name + "@" + version, Backend: BackendSpec{Type: typ, Config: cfg},
		Features: json.RawMessage(in.Features), Metadata: in.Metadata, CreatedAt: r.now().UTC()}
	if mv.Metadata == nil {
		mv.Metadata = map[string]any{}
	}
	if isEmptyJSON(mv.Features) {
		mv.Features = json.RawMessage("{}")
	}
	d, _ := r.drivers.Lookup(typ)
	if _, err := parseSpec(d, mv); err != nil {
		return nil, err
	}
	return mv, nil
}

// putVersion is PutVersion without the audit entry.
//
// From a config file (fromConfig) the version is the config's: it replaces
// the stored one even when endpoints use it, its backend is loaded as at
// start-up (one that is down leaves the arm unavailable, not the change
// refused), and a stored version that is already as the config says is
// left untouched (changed false).
func (r *Registry) putVersion(ctx context.Context, name, version string, body []byte, cond IfMatch, fromConfig bool) (mv *ModelVersion, created, changed bool, err error) {
	mv, err = r.ParseVersion(name, version, body)
	if err != nil {
		return nil, false, false, err
	}
	arm := mv.Arm
	inUse := func(s *Snapshot) error {
		if eps := s.usedBy(arm); len(eps) > 0 && !fromConfig {
			return fault.New(fault.Conflict, "version_in_use", "%s is used by endpoint(s) %v; register a new version instead", arm, eps)
		}
		return nil
	}
	if cur, ok := r.snap.Load().Versions[arm]; ok && fromConfig && sameDefinition(&cur.Spec, mv) {
		return &cur.Spec, false, false, nil
	}
	if err := inUse(r.snap.Load()); err != nil {
		return nil, false, false, err
	}
	v, err := r.build(ctx, mv, !fromConfig)
	if err != nil {
		return nil, false, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if err := inUse(old); err != nil { // it may have become an arm while loading
		closeScorer(v.Scorer)
		return nil, false, false, err
	}
	var stored []byte
	raw, err := r.update(ctx, store.Models, arm, func(cur []byte) ([]byte, error) {
		stored = cur
		next := *mv
		next.Revision = 1
		created = cur == nil
		if created {
			if err := cond.checkAbsent("model version " + arm); err != nil {
				return nil, err
			}
		} else {
			prev, err := decodeVersion(cur)
			if err != nil {
				return nil, unreadable("model version "+arm, err)
			}
			if err := cond.check("model version "+arm, prev.Revision); err != nil {
				return nil, err
			}
			if fromConfig && sameDefinition(prev, mv) {
				return nil, errUnchanged // another replica applied it first
			}
			next.Revision = prev.Revision + 1
		}
		return json.Marshal(&next)
	})
	changed = err == nil
	if errors.Is(err, errUnchanged) {
		raw, err = stored, nil // the store holds the config's version: serve it
	}
	if err != nil {
		closeScorer(v.Scorer)
		return nil, false, false, err
	}
	spec, err := decodeVersion(raw)
	if err == nil {
		err = r.decodeBackend(spec)
	}
	if err != nil {
		closeScorer(v.Scorer)
		return nil, false, false, unreadable("model version "+arm, err)
	}
	v.Spec = *spec
	prev, exists := old.Versions[arm]
	r.publish(func(s *Snapshot) { s.Versions[arm] = v })
	if exists && prev.Scorer != nil {
		r.retire(prev.Scorer)
	}
	return spec, created, changed, nil
}

// sameDefinition reports whether two versions say the same: backend,
// features and metadata (not their times or revisions).
func sameDefinition(a, b *ModelVersion) bool {
	def := func(v *ModelVersion) string {
		x, _ := json.Marshal(struct {
			Backend  BackendSpec     `json:"backend"`
			Features json.RawMessage `json:"features"`
			Metadata map[string]any  `json:"metadata"`
		}{v.Backend, v.Features, v.Metadata})
		return string(x)
	}
	return def(a) == def(b)
}

func storeError(err error) error {
	return &fault.Error{Kind: fault.Unavailable, Code: "store_unavailable", Message: "the store did not take the change; retry", Err: err}
}

// deleteVersion is DeleteVersion without the audit entry.
func (r *Registry) deleteVersion(ctx context.Context, name, version string, cond IfMatch) error {
	arm := name + "@" + version
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if eps := old.usedBy(arm); len(eps) > 0 {
		return fault.New(fault.Conflict, "version_in_use", "%s is used by endpoint(s) %v; remove it from them first", arm, eps)
	}
	notFound := fault.New(fault.NotFound, "version_not_found", "model version %s is not registered", arm)
	_, err := r.update(ctx, store.Models, arm, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return nil, notFound
		}
		prev, err := decodeVersion(cur)
		if err != nil {
			return nil, unreadable("model version "+arm, err)
		}
		if err := cond.check("model version "+arm, prev.Revision); err != nil {
			return nil, err
		}
		return nil, nil
	})
	if err != nil && err != notFound {
		return err
	}
	v, ok := old.Versions[arm]
	if ok {
		r.publish(func(s *Snapshot) { delete(s.Versions, arm) })
		if v.Scorer != nil {
			closeScorer(v.Scorer)
		}
	}
	return err
}

// Version returns a registered version.
func (r *Registry) Version(name, version string) (*ModelVersion, error) {
	v, ok := r.snap.Load().Versions[name+"@"+version]
	if !ok {
		if !r.hasModel(name) {
			return nil, fault.New(fault.NotFound, "model_not_found", "model %s is not registered", name)
		}
		return nil, fault.New(fault.NotFound, "version_not_found", "model version %s@%s is not registered", name, version)
	}
	mv := v.Spec
	return &mv, nil
}

func (r *Registry) hasModel(name string) bool { return r.snap.Load().hasModel(name) }

func (s *Snapshot) hasModel(name string) bool {
	for _, v := range s.Versions {
		if v.Spec.Name == name {
			return true
		}
	}
	return false
}

// Newest returns the model's registered version that sorts last (numeric
// versions numerically), or nil.
func (s *Snapshot) Newest(model string) *ModelVersion {
	var best *ModelVersion
	for _, v := range s.Versions {
		if v.Spec.Name == model && (best == nil || VersionLess(best.Version, v.Spec.Version)) {
			spec := v.Spec
			best = &spec
		}
	}
	return best
}

// ModelInfo is one model with its versions, sorted by version.
type ModelInfo struct {
	Name     string         `json:"name"`
	Versions []ModelVersion `json:"versions"`
}

// Models lists every model with its versions, sorted by name.
func (r *Registry) Models() []ModelInfo {
	by := map[string][]ModelVersion{}
	for _, v := range r.snap.Load().Versions {
		by[v.Spec.Name] = append(by[v.Spec.Name], v.Spec)
	}
	out := make([]ModelInfo, 0, len(by))
	for name, vs := range by {
		sort.Slice(vs, func(i, j int) bool { return VersionLess(vs[i].Version, vs[j].Version) })
		out = append(out, ModelInfo{Name: name, Versions: vs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// VersionLess orders numeric versions numerically, then the rest as strings.
func VersionLess(a, b string) bool {
	if len(a) != len(b) && isDigits(a) && isDigits(b) {
		return len(a) < len(b)
	}
	return a < b
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Reload re-reads the store, for a store that other replicas change, and
// publishes what changed: versions whose stored spec differs are loaded
// again (without validation; a backend that is down is unavailable until
// it answers), removed ones are closed, endpoints are replaced. On a store
// error the current snapshot stays. It reports whether anything changed.
func (r *Registry) Reload(ctx context.Context) (bool, error) {
	writes := r.writes.Load()
	models, err := r.db.List(ctx, store.Models)
	if err != nil {
		return false, fmt.Errorf("reload models: %w", err)
	}
	eps, err := r.db.List(ctx, store.Endpoints)
	if err != nil {
		return false, fmt.Errorf("reload endpoints: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writes.Load() != writes {
		// This registry stored a change since the lists were read: they
		// may be older than the snapshot. The change's notice brings the
		// next reload.
		return false, nil
	}
	old := r.snap.Load()
	next := &Snapshot{Versions: make(map[string]*Version, len(models)), Endpoints: make(map[string]*Endpoint, len(eps))}
	changed := false
	var closeLater []backend.Scorer
	for key, raw := range models {
		mv, err := decodeVersion(raw)
		if err != nil {
			r.log.Error("reload: unreadable model record", "key", key, "err", err)
			continue
		}
		// Decoded like the published specs, so that an unchanged record
		// compares equal; a type without a driver stays as stored.
		_ = r.decodeBackend(mv)
		if prev, ok := old.Versions[mv.Arm]; ok && sameSpec(&prev.Spec, mv) {
			next.Versions[mv.Arm] = prev
			continue
		}
		changed = true
		v, err := r.build(ctx, mv, false)
		if err != nil {
			r.log.Error("model version unavailable", "arm", mv.Arm, "err", err)
			v = &Version{Spec: *mv, LoadErr: err}
		}
		next.Versions[mv.Arm] = v
		if prev, ok := old.Versions[mv.Arm]; ok && prev.Scorer != nil {
			closeLater = append(closeLater, prev.Scorer)
		}
	}
	for arm, prev := range old.Versions {
		if _, ok := next.Versions[arm]; !ok {
			changed = true
			if prev.Scorer != nil {
				closeLater = append(closeLater, prev.Scorer)
			}
		}
	}
	for key, raw := range eps {
		ep, err := decodeEndpoint(raw)
		if err != nil {
			r.log.Error("reload: unreadable endpoint record", "key", key, "err", err)
			continue
		}
		if prev, ok := old.Endpoints[ep.Name]; ok {
			a, _ := json.Marshal(prev)
			b, _ := json.Marshal(ep)
			if string(a) == string(b) {
				next.Endpoints[ep.Name] = prev
				continue
			}
		}
		changed = true
		next.Endpoints[ep.Name] = ep
	}
	if len(next.Endpoints) != len(old.Endpoints) {
		changed = true
	}
	if changed {
		r.snap.Store(next)
		for _, sc := range closeLater {
			r.retire(sc)
		}
	}
	return changed, nil
}

func sameSpec(a, b *ModelVersion) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// PutVersion registers a version (created=true) or replaces one that no
// endpoint uses. The version is validated — spec parsed, backend loaded —
// before anything is stored. The model loads outside the registry's lock,
// so a slow registration never delays a pause. The change is audited.
func (r *Registry) PutVersion(ctx context.Context, name, version string, body []byte) (*ModelVersion, bool, error) {
	return r.putVersionAudited(ctx, name, version, body, IfMatch{})
}

// PutVersionIf is PutVersion as the API asks for it: applied only when the
// stored version meets cond (412 precondition_failed otherwise, and nothing
// changes), and refused for a version the config manages (409
// managed_by_config).
func (r *Registry) PutVersionIf(ctx context.Context, name, version string, body []byte, cond IfMatch) (*ModelVersion, bool, error) {
	if err := r.refuseManaged("model version", name+"@"+version); err != nil {
		r.audit.Record(ctx, "replace_version", name+"@"+version, err)
		return nil, false, err
	}
	return r.putVersionAudited(ctx, name, version, body, cond)
}

func (r *Registry) putVersionAudited(ctx context.Context, name, version string, body []byte, cond IfMatch) (*ModelVersion, bool, error) {
	mv, created, _, err := r.putVersion(ctx, name, version, body, cond, false)
	action := "replace_version"
	if created {
		action = "register_version"
	}
	r.audit.Record(ctx, action, name+"@"+version, err)
	return mv, created, err
}

// DeleteVersion removes a version no endpoint uses; the change is audited.
func (r *Registry) DeleteVersion(ctx context.Context, name, version string) error {
	err := r.deleteVersion(ctx, name, version, IfMatch{})
	r.audit.Record(ctx, "delete_version", name+"@"+version, err)
	return err
}

// DeleteVersionIf is DeleteVersion as the API asks for it: applied only
// when the stored version meets cond (412 precondition_failed otherwise,
// and nothing changes), and refused for a version the config manages (409
// managed_by_config).
func (r *Registry) DeleteVersionIf(ctx context.Context, name, version string, cond IfMatch) error {
	err := r.refuseManaged("model version", name+"@"+version)
	if err == nil {
		err = r.deleteVersion(ctx, name, version, cond)
	}
	r.audit.Record(ctx, "delete_version", name+"@"+version, err)
	return err
}
