package registry

import (
	"context"
	"fmt"

	"github.com/modelgate/modelgate/fault"
)

// ConfigVersion is a model version as a config file states it.
type ConfigVersion struct {
	Name, Version string
	Body          []byte
}

// ConfigEndpoint is an endpoint as a config file states it.
type ConfigEndpoint struct {
	Name string
	Body []byte
}

// managedSet is what the config file owns: arms ("name@version") and
// endpoint names.
type managedSet struct {
	versions, endpoints map[string]bool
}

// refuseManaged is the API's answer to a change of an entry the config
// owns (kind "model version" or "endpoint").
func (r *Registry) refuseManaged(kind, name string) error {
	m := r.managed.Load()
	if m == nil {
		return nil
	}
	owned := m.endpoints[name]
	if kind != "endpoint" {
		owned = m.versions[name]
	}
	if !owned {
		return nil
	}
	return fault.New(fault.Conflict, "managed_by_config",
		"%s %s is managed by the config file (registry.managed: config): change it there; only pause and resume are taken through the API", kind, name)
}

// SeedVersion registers a version a config file names, as at start-up: its
// spec is checked, but a remote backend that is down leaves the version
// unavailable (until a health check succeeds) instead of refusing it, so
// that an unreachable model server never stops a start. The change is
// audited. Use PutVersion for a registration that must reach the backend.
func (r *Registry) SeedVersion(ctx context.Context, v ConfigVersion) error {
	_, err := r.applyVersion(ctx, v)
	return err
}

// applyVersion puts a version as a config states it (putVersion's
// fromConfig) and audits the change, or the failure; a version already as
// stated is neither changed nor audited.
func (r *Registry) applyVersion(ctx context.Context, v ConfigVersion) (changed bool, err error) {
	_, created, changed, err := r.putVersion(ctx, v.Name, v.Version, v.Body, IfMatch{}, true)
	if changed || err != nil {
		action := "replace_version"
		if created {
			action = "register_version"
		}
		r.audit.Record(ctx, action, v.Name+"@"+v.Version, err)
	}
	return changed, err
}

// applyEndpoint is applyVersion for an endpoint (putEndpoint's fromConfig).
func (r *Registry) applyEndpoint(ctx context.Context, e ConfigEndpoint) (changed bool, err error) {
	_, created, changed, err := r.putEndpoint(ctx, e.Name, e.Body, IfMatch{}, true)
	if changed || err != nil {
		action := "replace_endpoint"
		if created {
			action = "create_endpoint"
		}
		r.audit.Record(ctx, action, e.Name, err)
	}
	return changed, err
}

// ApplyConfig makes the registry hold the config's versions and endpoints
// as the config states them, and owns them from then on: until the next
// ApplyConfig, the API's changes to them (PutVersionIf, DeleteVersionIf,
// PutEndpointIf, DeleteEndpointIf, AddArmIf) are refused with 409
// managed_by_config. Pause and resume are not: they stay an operator's
// kill switch, and re-applying an endpoint keeps its arms' paused states.
// Entries the config does not name are not touched, nor owned.
//
// Every entry is checked before any is applied, endpoints against the
// versions the registry will hold (so a config naming an arm it neither
// registers nor finds registered changes nothing). A version that differs
// from the stored one replaces it, even while endpoints use it; its
// backend loads as at start-up, so one that is down leaves the arm
// unavailable instead of refusing the change. An entry already as the
// config says is left untouched, so replicas applying the same config
// agree without conflict. It returns how many entries it changed.
func (r *Registry) ApplyConfig(ctx context.Context, versions []ConfigVersion, endpoints []ConfigEndpoint) (int, error) {
	set := &managedSet{versions: map[string]bool{}, endpoints: map[string]bool{}}
	models := map[string]string{} // model -> the backend type of a version the config names
	for _, v := range versions {
		mv, err := r.ParseVersion(v.Name, v.Version, v.Body)
		if err != nil {
			return 0, fmt.Errorf("model %s@%s: %w", v.Name, v.Version, err)
		}
		set.versions[mv.Arm] = true
		models[v.Name] = mv.Backend.Type
	}
	snap := r.snap.Load()
	known := func(arm string) bool { _, ok := snap.Versions[arm]; return ok || set.versions[arm] }
	hasModel := func(name string) bool { _, ok := models[name]; return ok || snap.hasModel(name) }
	for _, e := range endpoints {
		in, _, err := decodeEndpointBody(e.Name, e.Body)
		if err != nil {
			return 0, fmt.Errorf("endpoint %s: %w", e.Name, err)
		}
		// What it names must exist once the config's versions are in.
		auto, err := checkEndpointRefs(in, known, hasModel)
		if err != nil {
			return 0, fmt.Errorf("endpoint %s: %w", e.Name, err)
		}
		if auto != nil {
			typ, ok := models[auto.Model]
			if !ok {
				typ = snap.Newest(auto.Model).Backend.Type
			}
			if !r.canList(typ) {
				return 0, fmt.Errorf("endpoint %s: %w", e.Name, autoArmsUnlisted(auto.Model, typ))
			}
		}
		set.endpoints[e.Name] = true
	}
	n := 0
	for _, v := range versions {
		changed, err := r.applyVersion(ctx, v)
		if changed {
			n++
		}
		if err != nil {
			return n, fmt.Errorf("model %s@%s: %w", v.Name, v.Version, err)
		}
	}
	for _, e := range endpoints {
		changed, err := r.applyEndpoint(ctx, e)
		if changed {
			n++
		}
		if err != nil {
			return n, fmt.Errorf("endpoint %s: %w", e.Name, err)
		}
	}
	r.managed.Store(set)
	return n, nil
}
