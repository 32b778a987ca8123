package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/store"
)

// checkBackend validates the backend fields a type needs, and makes an
// embedded path absolute.
func checkBackend(b *BackendSpec) error {
	switch b.Type {
	case "embedded":
		if b.Path == "" {
			return fault.Field("backend.path", "missing_field", "an embedded backend needs a path")
		}
		p, err := filepath.Abs(b.Path)
		if err != nil {
			return fault.Field("backend.path", "invalid_model", "%v", err)
		}
		b.Path = p
	case "tfserving":
		switch {
		case b.Target == "":
			return fault.Field("backend.target", "missing_field", "a tfserving backend needs a target, e.g. \"tfserving:8500\"")
		case b.ModelName == "":
			return fault.Field("backend.model_name", "missing_field", "a tfserving backend needs the model_name TF Serving serves")
		case b.Version != nil && b.VersionLabel != "":
			return fault.Field("backend.version_label", "invalid_backend", "give version or version_label, not both")
		case b.Version != nil && *b.Version < 0:
			return fault.Field("backend.version", "invalid_backend", "must be ≥ 0")
		case b.Outputs == nil || b.Outputs.Scores == "":
			return fault.Field("backend.outputs.scores", "missing_field", "map the signature output holding the scores, e.g. {\"scores\": \"scores\"}")
		}
		if b.SignatureName == "" {
			b.SignatureName = "serving_default"
		}
	}
	if b.Type == "onnx" {
		if b.Path == "" {
			return fault.Field("backend.path", "missing_field", "an onnx backend needs a path")
		}
		p, err := filepath.Abs(b.Path)
		if err != nil {
			return fault.Field("backend.path", "invalid_model", "%v", err)
		}
		b.Path = p
		if bt := b.Batching; bt != nil && (bt.MaxBatchSize < 1 || bt.MaxBatchSize > 4096 || bt.BatchTimeoutUS < 0 || bt.BatchTimeoutUS > 1000000) {
			return fault.Field("backend.batching", "invalid_backend", "max_batch_size is 1..4096 and batch_timeout_us 0..1000000")
		}
	} else if b.Batching != nil {
		return fault.Field("backend.batching", "invalid_backend", "batching applies to onnx backends only")
	}
	if b.TLS != nil && b.Type != "tfserving" {
		return fault.Field("backend.tls", "invalid_backend", "tls applies to remote backends only")
	}
	return nil
}

// CheckEndpoint validates an endpoint body — fields, policy, auto_arms —
// without checking that its arms exist or storing anything.
func (r *Registry) CheckEndpoint(name string, body []byte) error {
	if !ValidName(name) {
		return fault.Field("endpoint", "invalid_name", "endpoint names are 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit")
	}
	var in endpointBody
	if err := fault.DecodeJSON(body, &in); err != nil {
		return err
	}
	if _, err := parsePolicy(in.Policy); err != nil {
		return err
	}
	return checkAutoArms(in.AutoArms)
}

func checkAutoArms(a *AutoArms) error {
	if a == nil {
		return nil
	}
	if a.Interval == "" {
		a.Interval = "10s"
	}
	if d, err := time.ParseDuration(a.Interval); err != nil || d < time.Second || d > 24*time.Hour {
		return fault.Field("auto_arms.interval", "invalid_auto_arms", "must be a duration from 1s to 24h, e.g. \"30s\"")
	}
	if !ValidName(a.Model) {
		return fault.Field("auto_arms.model", "invalid_auto_arms", "name the model to watch")
	}
	return nil
}

// putEndpoint is PutEndpoint without the audit entry.
func (r *Registry) putEndpoint(ctx context.Context, name string, body []byte) (*Endpoint, bool, error) {
	if !ValidName(name) {
		return nil, false, fault.Field("endpoint", "invalid_name", "endpoint names are 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit")
	}
	var in endpointBody
	if err := fault.DecodeJSON(body, &in); err != nil {
		return nil, false, err
	}
	pol, err := parsePolicy(in.Policy)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.snap.Load()
	if len(in.Arms) == 0 {
		return nil, false, fault.Field("arms", "missing_field", "an endpoint needs at least one arm")
	}
	if len(in.Arms) > 64 {
		return nil, false, fault.Field("arms", "too_many_arms", "at most 64 arms")
	}
	seen := map[string]bool{}
	for i, arm := range in.Arms {
		field := fmt.Sprintf("arms[%d]", i)
		if seen[arm] {
			return nil, false, fault.Field(field, "duplicate_arm", "%s is listed twice", arm)
		}
		seen[arm] = true
		if err := checkArm(snap, field, arm); err != nil {
			return nil, false, err
		}
	}
	if in.Fallback != "" && !seen[in.Fallback] {
		return nil, false, fault.Field("fallback", "invalid_fallback", "the fallback %q must be one of the endpoint's arms", in.Fallback)
	}
	if err := checkAutoArms(in.AutoArms); err != nil {
		return nil, false, err
	}
	if a := in.AutoArms; a != nil {
		if !snap.hasModel(a.Model) {
			return nil, false, fault.Field("auto_arms.model", "invalid_auto_arms", "model %q has no registered version to copy new versions from", a.Model)
		}
	}
	now := r.now().UTC()
	ep := &Endpoint{Name: name, Arms: in.Arms, ArmStates: map[string]string{}, Policy: pol,
		Fallback: in.Fallback, AutoArms: in.AutoArms, CreatedAt: now, UpdatedAt: now}
	old, exists := snap.Endpoints[name]
	for _, arm := range in.Arms {
		ep.ArmStates[arm] = Active
		if exists && old.ArmStates[arm] == Paused {
			ep.ArmStates[arm] = Paused
			if why := old.ArmReasons[arm]; why != "" {
				if ep.ArmReasons == nil {
					ep.ArmReasons = map[string]string{}
				}
				ep.ArmReasons[arm] = why
			}
		}
	}
	if exists {
		ep.CreatedAt = old.CreatedAt
	}
	if err := r.saveEndpoint(ctx, ep); err != nil {
		return nil, false, err
	}
	return ep, !exists, nil
}

func checkArm(snap *Snapshot, field, arm string) error {
	if _, _, ok := SplitArm(arm); !ok {
		return fault.Field(field, "invalid_arm", "%q is not an arm id of the form name@version", arm)
	}
	if _, ok := snap.Versions[arm]; !ok {
		return fault.Field(field, "unknown_model_version", "model version %s is not registered", arm)
	}
	return nil
}

func (r *Registry) saveEndpoint(ctx context.Context, ep *Endpoint) error {
	raw, _ := json.Marshal(ep)
	if err := r.db.Put(ctx, store.Endpoints, ep.Name, raw); err != nil {
		return storeError(err)
	}
	r.publish(func(s *Snapshot) { s.Endpoints[ep.Name] = ep })
	return nil
}

// Endpoint returns one endpoint.
func (r *Registry) Endpoint(name string) (*Endpoint, error) {
	ep, ok := r.snap.Load().Endpoints[name]
	if !ok {
		return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %s does not exist", name)
	}
	return ep, nil
}

// Endpoints lists every endpoint by name.
func (r *Registry) Endpoints() []*Endpoint {
	s := r.snap.Load()
	out := make([]*Endpoint, 0, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// deleteEndpoint is DeleteEndpoint without the audit entry.
func (r *Registry) deleteEndpoint(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.snap.Load().Endpoints[name]; !ok {
		return fault.New(fault.NotFound, "endpoint_not_found", "endpoint %s does not exist", name)
	}
	if err := r.db.Delete(ctx, store.Endpoints, name); err != nil {
		return storeError(err)
	}
	r.publish(func(s *Snapshot) { delete(s.Endpoints, name) })
	return nil
}

// addArm is AddArm without the audit entry.
func (r *Registry) addArm(ctx context.Context, endpoint, arm string) (*Endpoint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.snap.Load()
	old, ok := snap.Endpoints[endpoint]
	if !ok {
		return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %s does not exist", endpoint)
	}
	if err := checkArm(snap, "arm", arm); err != nil {
		return nil, err
	}
	if slices.Contains(old.Arms, arm) {
		return nil, fault.New(fault.Conflict, "arm_exists", "%s is already an arm of %s", arm, endpoint)
	}
	if len(old.Arms) >= 64 {
		return nil, fault.Field("arm", "too_many_arms", "at most 64 arms")
	}
	ep := cloneEndpoint(old)
	ep.Arms = append(ep.Arms, arm)
	ep.ArmStates[arm] = Active
	ep.UpdatedAt = r.now().UTC()
	if err := r.saveEndpoint(ctx, ep); err != nil {
		return nil, err
	}
	return ep, nil
}

// SetArmState pauses or resumes an arm; it takes effect on the next request.
func (r *Registry) SetArmState(ctx context.Context, endpoint, arm, state string) (*Endpoint, error) {
	return r.setArmState(ctx, endpoint, arm, state, "")
}

// PauseArm pauses an arm automatically, recording why (shown with the
// endpoint and in its report). An arm already paused is left as it is.
func (r *Registry) PauseArm(ctx context.Context, endpoint, arm, reason string) (*Endpoint, error) {
	if ep, err := r.Endpoint(endpoint); err == nil && ep.ArmStates[arm] == Paused {
		return ep, nil
	}
	return r.setArmState(ctx, endpoint, arm, Paused, reason)
}

func (r *Registry) setArmState(ctx context.Context, endpoint, arm, state, reason string) (ep *Endpoint, err error) {
	defer func() {
		action := "resume_arm"
		if state == Paused {
			action = "pause_arm"
		}
		r.audit.Record(ctx, action, endpoint+"/"+arm, err)
	}()
	return r.setArmStateLocked(ctx, endpoint, arm, state, reason)
}

func (r *Registry) setArmStateLocked(ctx context.Context, endpoint, arm, state, reason string) (*Endpoint, error) {
	if state != Active && state != Paused {
		return nil, fault.Field("state", "invalid_state", "state must be \"active\" or \"paused\"")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.snap.Load().Endpoints[endpoint]
	if !ok {
		return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %s does not exist", endpoint)
	}
	if !slices.Contains(old.Arms, arm) {
		return nil, fault.New(fault.NotFound, "arm_not_found", "%s is not an arm of %s", arm, endpoint)
	}
	ep := cloneEndpoint(old)
	ep.ArmStates[arm] = state
	delete(ep.ArmReasons, arm)
	if reason != "" {
		if ep.ArmReasons == nil {
			ep.ArmReasons = map[string]string{}
		}
		ep.ArmReasons[arm] = reason
	}
	ep.UpdatedAt = r.now().UTC()
	if err := r.saveEndpoint(ctx, ep); err != nil {
		return nil, err
	}
	return ep, nil
}

func cloneEndpoint(e *Endpoint) *Endpoint {
	c := *e
	c.Arms = slices.Clone(e.Arms)
	c.ArmStates = make(map[string]string, len(e.ArmStates))
	for k, v := range e.ArmStates {
		c.ArmStates[k] = v
	}
	if e.ArmReasons != nil {
		c.ArmReasons = make(map[string]string, len(e.ArmReasons))
		for k, v := range e.ArmReasons {
			c.ArmReasons[k] = v
		}
	}
	c.Policy.SegmentBy = slices.Clone(e.Policy.SegmentBy)
	return &c
}

// HasVersion reports whether arm is registered.
func (r *Registry) HasVersion(arm string) bool {
	_, ok := r.snap.Load().Versions[arm]
	return ok
}

// HasEndpoint reports whether the endpoint exists.
func (r *Registry) HasEndpoint(name string) bool {
	_, ok := r.snap.Load().Endpoints[name]
	return ok
}

// PutEndpoint creates (created=true) or replaces an endpoint. Every arm and
// the fallback must be registered versions; the fallback must be one of the
// arms. Replacing keeps the paused state of arms that remain, so re-applying
// a definition never silently resumes a paused arm. The change is audited.
func (r *Registry) PutEndpoint(ctx context.Context, name string, body []byte) (*Endpoint, bool, error) {
	ep, created, err := r.putEndpoint(ctx, name, body)
	action := "replace_endpoint"
	if created {
		action = "create_endpoint"
	}
	r.audit.Record(ctx, action, name, err)
	return ep, created, err
}

// DeleteEndpoint removes an endpoint (its counters stay in the store); the
// change is audited.
func (r *Registry) DeleteEndpoint(ctx context.Context, name string) error {
	err := r.deleteEndpoint(ctx, name)
	r.audit.Record(ctx, "delete_endpoint", name, err)
	return err
}

// AddArm adds a registered version to an endpoint as an active arm; the
// change is audited.
func (r *Registry) AddArm(ctx context.Context, endpoint, arm string) (*Endpoint, error) {
	ep, err := r.addArm(ctx, endpoint, arm)
	r.audit.Record(ctx, "add_arm", endpoint+"/"+arm, err)
	return ep, err
}
