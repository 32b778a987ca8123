package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/duration"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/store"
)

// CheckEndpoint validates an endpoint body — fields, policy, auto_arms —
// without checking that its arms exist or storing anything.
func (r *Registry) CheckEndpoint(name string, body []byte) error {
	in, _, err := decodeEndpointBody(name, body)
	if err != nil {
		return err
	}
	if err := checkHoldoutArm(in); err != nil {
		return err
	}
	if _, err := parseShadows(in, nil); err != nil {
		return err
	}
	_, err = parseAutoArms(in.AutoArms)
	return err
}

// parseShadows checks a body's shadows: at most MaxShadows, each an arm id
// listed once, not one of the endpoint's arms, registered (when known is
// not nil) and with a share in (0, 1]. It returns nil for none.
func parseShadows(in *endpointBody, known func(arm string) bool) ([]Shadow, error) {
	if len(in.Shadows) == 0 {
		return nil, nil
	}
	if len(in.Shadows) > MaxShadows {
		return nil, fault.Field("shadows", "invalid_shadow", "at most %d shadows", MaxShadows)
	}
	out := make([]Shadow, 0, len(in.Shadows))
	for i, sb := range in.Shadows {
		field := fmt.Sprintf("shadows[%d]", i)
		switch {
		case !validArmID(sb.Arm):
			return nil, fault.Field(field+".arm", "invalid_shadow", "name a registered model version, e.g. \"mf@3\"")
		case slices.Contains(in.Arms, sb.Arm):
			return nil, fault.Field(field+".arm", "invalid_shadow", "%s is one of the endpoint's arms: a shadow is a version that does not serve yet (promote a shadow to make it an arm)", sb.Arm)
		case slices.ContainsFunc(out, func(o Shadow) bool { return o.Arm == sb.Arm }):
			return nil, fault.Field(field+".arm", "invalid_shadow", "%s is listed twice", sb.Arm)
		case sb.Share == nil || !(*sb.Share > 0 && *sb.Share <= 1):
			return nil, fault.Field(field+".share", "invalid_shadow", "must be in (0, 1]")
		}
		if known != nil {
			if err := checkArmIn(known, field+".arm", sb.Arm); err != nil {
				return nil, err
			}
		}
		out = append(out, Shadow{Arm: sb.Arm, Share: *sb.Share})
	}
	return out, nil
}

// validArmID reports whether arm has the form name@version.
func validArmID(arm string) bool {
	_, _, ok := SplitArm(arm)
	return ok
}

// decodeEndpointBody checks an endpoint's name and decodes its body and
// policy.
func decodeEndpointBody(name string, body []byte) (*endpointBody, Policy, error) {
	if !ValidName(name) {
		return nil, Policy{}, fault.Field("endpoint", "invalid_name", "must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit")
	}
	var in endpointBody
	if err := fault.DecodeJSON(body, &in); err != nil {
		return nil, Policy{}, err
	}
	pol, err := parsePolicy(in.Policy)
	if err != nil {
		return nil, Policy{}, err
	}
	return &in, pol, nil
}

// checkHoldoutArm checks that a body's holdout arm, if it has one, is one
// of its arms.
func checkHoldoutArm(in *endpointBody) error {
	if p := in.Policy; p != nil && p.Holdout != nil && !slices.Contains(in.Arms, p.Holdout.Arm) {
		return fault.Field("policy.holdout.arm", "invalid_holdout", "%q must be one of the endpoint's arms", p.Holdout.Arm)
	}
	return nil
}

// parseAutoArms validates an auto_arms body and fills in the default
// interval; nil stays nil (no watching).
func parseAutoArms(a *autoArmsBody) (*AutoArms, error) {
	if a == nil {
		return nil, nil
	}
	if a.Interval == "" {
		a.Interval = "10s"
	}
	d, err := duration.Parse(a.Interval)
	if err != nil || d.Std() < time.Second || d.Std() > 24*time.Hour {
		return nil, fault.Field("auto_arms.interval", "invalid_auto_arms", "must be a duration from 1s to 24h, e.g. \"30s\"")
	}
	if !ValidName(a.Model) {
		return nil, fault.Field("auto_arms.model", "invalid_auto_arms", "name the model to watch")
	}
	return &AutoArms{Model: a.Model, Interval: d}, nil
}

// putEndpoint is PutEndpoint without the audit entry.
//
// From a config file (fromConfig), an endpoint already as the config says
// (arms, policy, fallback, auto_arms) is left untouched: changed is false.
func (r *Registry) putEndpoint(ctx context.Context, name string, body []byte, cond IfMatch, fromConfig bool) (_ *Endpoint, created, changed bool, _ error) {
	in, pol, err := decodeEndpointBody(name, body)
	if err != nil {
		return nil, false, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.snap.Load()
	known := func(arm string) bool { _, ok := snap.Versions[arm]; return ok }
	autoArms, err := checkEndpointRefs(in, known, snap.hasModel)
	if err != nil {
		return nil, false, false, err
	}
	shadows, err := parseShadows(in, known)
	if err != nil {
		return nil, false, false, err
	}
	if err := resolveContextFeatures(&pol, in.Arms, func(arm string) *featurizer.Plan {
		if v := snap.Versions[arm]; v != nil {
			return v.Plan
		}
		return nil
	}); err != nil {
		return nil, false, false, err
	}
	if a := autoArms; a != nil {
		if typ := snap.Newest(a.Model).Backend.Type; !r.canList(typ) {
			return nil, false, false, autoArmsUnlisted(a.Model, typ)
		}
	}
	now := r.now().UTC()
	// The paused state of arms that remain comes from the stored endpoint,
	// read again on every attempt, so a pause that lands meanwhile (on any
	// replica) is kept.
	var stored []byte
	raw, err := r.update(ctx, store.Endpoints, name, func(cur []byte) ([]byte, error) {
		stored = cur
		ep := &Endpoint{Name: name, Arms: in.Arms, ArmStates: map[string]ArmState{}, Policy: pol,
			Fallback: in.Fallback, AutoArms: autoArms, Shadows: shadows, CreatedAt: now, UpdatedAt: now, Revision: 1}
		var old *Endpoint
		created = cur == nil
		if created {
			if err := cond.checkAbsent("endpoint " + name); err != nil {
				return nil, err
			}
		} else {
			var err error
			if old, err = decodeEndpoint(cur); err != nil {
				return nil, unreadable("endpoint "+name, err)
			}
			if err := cond.check("endpoint "+name, old.Revision); err != nil {
				return nil, err
			}
			ep.CreatedAt, ep.Revision = old.CreatedAt, old.Revision+1
		}
		for _, arm := range in.Arms {
			ep.ArmStates[arm] = Active
			if old != nil && old.ArmStates[arm] == Paused {
				ep.ArmStates[arm] = Paused
				if why := old.ArmReasons[arm]; why != "" {
					if ep.ArmReasons == nil {
						ep.ArmReasons = map[string]string{}
					}
					ep.ArmReasons[arm] = why
				}
			}
		}
		if fromConfig && old != nil && sameEndpoint(old, ep) {
			return nil, errUnchanged
		}
		return json.Marshal(ep)
	})
	changed = err == nil
	if errors.Is(err, errUnchanged) {
		raw, err = stored, nil
	}
	if err != nil {
		return nil, false, false, err
	}
	ep, err := r.publishEndpoint(raw)
	if err != nil {
		return nil, false, false, err
	}
	return ep, created, changed, nil
}

// sameEndpoint reports whether two endpoints are defined alike: arms,
// policy, fallback, auto_arms and shadows (not arm states, times or
// revisions).
func sameEndpoint(a, b *Endpoint) bool {
	def := func(e *Endpoint) string {
		x, _ := json.Marshal(struct {
			Arms     []string  `json:"arms"`
			Policy   Policy    `json:"policy"`
			Fallback string    `json:"fallback"`
			AutoArms *AutoArms `json:"auto_arms"`
			Shadows  []Shadow  `json:"shadows"`
		}{e.Arms, e.Policy, e.Fallback, e.AutoArms, e.Shadows})
		return string(x)
	}
	return def(a) == def(b)
}

func checkArm(snap *Snapshot, field, arm string) error {
	return checkArmIn(func(a string) bool { _, ok := snap.Versions[a]; return ok }, field, arm)
}

// checkArmIn is checkArm against the versions known reports registered.
func checkArmIn(known func(arm string) bool, field, arm string) error {
	if _, _, ok := SplitArm(arm); !ok {
		return fault.Field(field, "invalid_arm", "%q is not an arm id of the form name@version", arm)
	}
	if !known(arm) {
		return fault.Field(field, "unknown_model_version", "model version %s is not registered", arm)
	}
	return nil
}

// autoArmsUnlisted is the error for auto_arms on a model whose backend
// cannot list its published versions.
func autoArmsUnlisted(model, typ string) error {
	return fault.Field("auto_arms.model", "invalid_auto_arms", "%q is served by a %s backend, which cannot list its published versions: auto_arms is not offered for it", model, typ)
}

// checkEndpointRefs checks what an endpoint body names against the
// registered versions (known) and models (hasModel): its arms (1 to 64,
// each once, each registered), its fallback and its holdout arm (one of
// them) and its auto_arms (a model with a version). It returns the parsed auto_arms.
func checkEndpointRefs(in *endpointBody, known func(arm string) bool, hasModel func(name string) bool) (*AutoArms, error) {
	if len(in.Arms) == 0 {
		return nil, fault.Field("arms", "missing_field", "an endpoint needs at least one arm")
	}
	if len(in.Arms) > 64 {
		return nil, fault.Field("arms", "too_many_arms", "at most 64 arms")
	}
	seen := map[string]bool{}
	for i, arm := range in.Arms {
		field := fmt.Sprintf("arms[%d]", i)
		if seen[arm] {
			return nil, fault.Field(field, "duplicate_arm", "%s is listed twice", arm)
		}
		seen[arm] = true
		if err := checkArmIn(known, field, arm); err != nil {
			return nil, err
		}
	}
	if in.Fallback != "" && !seen[in.Fallback] {
		return nil, fault.Field("fallback", "invalid_fallback", "%q must be one of the endpoint's arms", in.Fallback)
	}
	if err := checkHoldoutArm(in); err != nil {
		return nil, err
	}
	autoArms, err := parseAutoArms(in.AutoArms)
	if err != nil {
		return nil, err
	}
	if a := autoArms; a != nil && !hasModel(a.Model) {
		return nil, fault.Field("auto_arms.model", "invalid_auto_arms", "%q has no registered version to copy new versions from", a.Model)
	}
	return autoArms, nil
}

// publishEndpoint puts a stored endpoint record into the snapshot.
func (r *Registry) publishEndpoint(raw []byte) (*Endpoint, error) {
	ep, err := decodeEndpoint(raw)
	if err != nil {
		return nil, unreadable("endpoint", err)
	}
	r.publish(func(s *Snapshot) { s.Endpoints[ep.Name] = ep })
	return ep, nil
}

// changeEndpoint applies f to a copy of the latest stored endpoint, when
// it exists and meets cond, and stores the result with the next revision;
// the snapshot then shows what was stored. f returns errUnchanged to store
// nothing (the endpoint is returned as stored, with changed false). f may
// run more than once.
func (r *Registry) changeEndpoint(ctx context.Context, name string, cond IfMatch, f func(ep *Endpoint) error) (ep *Endpoint, changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stored []byte
	raw, err := r.update(ctx, store.Endpoints, name, func(cur []byte) ([]byte, error) {
		stored = cur
		if cur == nil {
			return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %s does not exist", name)
		}
		old, err := decodeEndpoint(cur)
		if err != nil {
			return nil, unreadable("endpoint "+name, err)
		}
		if err := cond.check("endpoint "+name, old.Revision); err != nil {
			return nil, err
		}
		if err := f(old); err != nil {
			return nil, err
		}
		old.Revision++
		old.UpdatedAt = r.now().UTC()
		return json.Marshal(old)
	})
	changed = err == nil
	if errors.Is(err, errUnchanged) {
		raw, err = stored, nil
	}
	if err != nil {
		if fe := fault.As(err); fe != nil && fe.Code == "endpoint_not_found" {
			r.publish(func(s *Snapshot) { delete(s.Endpoints, name) })
		}
		return nil, false, err
	}
	ep, err = r.publishEndpoint(raw)
	return ep, changed, err
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
func (r *Registry) deleteEndpoint(ctx context.Context, name string, cond IfMatch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.update(ctx, store.Endpoints, name, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %s does not exist", name)
		}
		old, err := decodeEndpoint(cur)
		if err != nil {
			return nil, unreadable("endpoint "+name, err)
		}
		return nil, cond.check("endpoint "+name, old.Revision)
	})
	if f := fault.As(err); err == nil || (f != nil && f.Code == "endpoint_not_found") {
		r.publish(func(s *Snapshot) { delete(s.Endpoints, name) })
	}
	return err
}

// addArm is AddArm without the audit entry.
func (r *Registry) addArm(ctx context.Context, endpoint, arm string, cond IfMatch) (*Endpoint, error) {
	if err := checkArm(r.snap.Load(), "arm", arm); err != nil {
		return nil, err
	}
	ep, _, err := r.changeEndpoint(ctx, endpoint, cond, func(ep *Endpoint) error {
		if slices.Contains(ep.Arms, arm) {
			return fault.New(fault.Conflict, "arm_exists", "%s is already an arm of %s", arm, endpoint)
		}
		if len(ep.Arms) >= 64 {
			return fault.Field("arm", "too_many_arms", "at most 64 arms")
		}
		ep.Arms = append(ep.Arms, arm)
		ep.ArmStates[arm] = Active
		// An arm is never its endpoint's shadow too: adding a shadow as an
		// arm promotes it.
		ep.Shadows = slices.DeleteFunc(ep.Shadows, func(s Shadow) bool { return s.Arm == arm })
		return nil
	})
	return ep, err
}

// PromoteShadow makes a shadow of the endpoint an active arm and removes
// it from the shadows, in one change, applied only when the stored
// endpoint meets cond. It is 404 endpoint_not_found or shadow_not_found
// when the endpoint or the shadow does not exist, 409 arm_exists when the
// version is an arm already (promoted before), 409 too_many_arms at 64
// arms and 409 managed_by_config for an endpoint the config manages. The
// change is audited.
func (r *Registry) PromoteShadow(ctx context.Context, endpoint, arm string, cond IfMatch) (*Endpoint, error) {
	target := endpoint + "/" + arm
	if err := r.refuseManaged("endpoint", endpoint); err != nil {
		r.audit.Record(ctx, "promote_shadow", target, err)
		return nil, err
	}
	ep, _, err := r.changeEndpoint(ctx, endpoint, cond, func(ep *Endpoint) error {
		i := slices.IndexFunc(ep.Shadows, func(s Shadow) bool { return s.Arm == arm })
		switch {
		case slices.Contains(ep.Arms, arm):
			return fault.New(fault.Conflict, "arm_exists", "%s is already an arm of %s", arm, endpoint)
		case i < 0:
			return fault.New(fault.NotFound, "shadow_not_found", "%s is not a shadow of %s", arm, endpoint)
		case len(ep.Arms) >= 64:
			return fault.New(fault.Conflict, "too_many_arms", "%s has 64 arms, the most an endpoint may have", endpoint)
		}
		ep.Arms = append(ep.Arms, arm)
		ep.ArmStates[arm] = Active
		ep.Shadows = slices.Delete(ep.Shadows, i, i+1)
		return nil
	})
	r.audit.Record(ctx, "promote_shadow", target, err)
	return ep, err
}

// SetArmState pauses or resumes an arm; it takes effect on the next request.
func (r *Registry) SetArmState(ctx context.Context, endpoint, arm string, state ArmState) (*Endpoint, error) {
	return r.SetArmStateIf(ctx, endpoint, arm, state, IfMatch{})
}

// SetArmStateIf is SetArmState applied only when the stored endpoint meets
// cond (412 precondition_failed otherwise, and nothing changes).
func (r *Registry) SetArmStateIf(ctx context.Context, endpoint, arm string, state ArmState, cond IfMatch) (*Endpoint, error) {
	return r.setArmState(ctx, endpoint, arm, state, "", cond)
}

// PauseArm pauses an arm automatically, recording why (shown with the
// endpoint and in its report). An arm already paused (in the store, by
// anyone) is left as it is.
func (r *Registry) PauseArm(ctx context.Context, endpoint, arm, reason string) (*Endpoint, error) {
	if ep, err := r.Endpoint(endpoint); err == nil && ep.ArmStates[arm] == Paused {
		return ep, nil
	}
	return r.setArmState(ctx, endpoint, arm, Paused, reason, IfMatch{})
}

// setArmState sets an arm's state and audits the change; an automatic
// pause (reason set) of an arm the store holds paused already changes and
// records nothing.
func (r *Registry) setArmState(ctx context.Context, endpoint, arm string, state ArmState, reason string, cond IfMatch) (*Endpoint, error) {
	action := "resume_arm"
	if state == Paused {
		action = "pause_arm"
	}
	if !state.Valid() {
		err := fault.Field("state", "invalid_state", "must be \"active\" or \"paused\"")
		r.audit.Record(ctx, action, endpoint+"/"+arm, err)
		return nil, err
	}
	ep, changed, err := r.changeEndpoint(ctx, endpoint, cond, func(ep *Endpoint) error {
		if !slices.Contains(ep.Arms, arm) {
			return fault.New(fault.NotFound, "arm_not_found", "%s is not an arm of %s", arm, endpoint)
		}
		if reason != "" && ep.ArmStates[arm] == Paused {
			return errUnchanged // an automatic pause never overwrites a pause
		}
		ep.ArmStates[arm] = state
		delete(ep.ArmReasons, arm)
		if reason != "" {
			if ep.ArmReasons == nil {
				ep.ArmReasons = map[string]string{}
			}
			ep.ArmReasons[arm] = reason
		}
		return nil
	})
	if changed || err != nil {
		r.audit.Record(ctx, action, endpoint+"/"+arm, err)
	}
	return ep, err
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
	return r.putEndpointAudited(ctx, name, body, IfMatch{})
}

// PutEndpointIf is PutEndpoint as the API asks for it: applied only when
// the stored endpoint meets cond (412 precondition_failed otherwise, and
// nothing changes), and refused for an endpoint the config manages (409
// managed_by_config).
func (r *Registry) PutEndpointIf(ctx context.Context, name string, body []byte, cond IfMatch) (*Endpoint, bool, error) {
	if err := r.refuseManaged("endpoint", name); err != nil {
		r.audit.Record(ctx, "replace_endpoint", name, err)
		return nil, false, err
	}
	return r.putEndpointAudited(ctx, name, body, cond)
}

func (r *Registry) putEndpointAudited(ctx context.Context, name string, body []byte, cond IfMatch) (*Endpoint, bool, error) {
	ep, created, _, err := r.putEndpoint(ctx, name, body, cond, false)
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
	err := r.deleteEndpoint(ctx, name, IfMatch{})
	r.audit.Record(ctx, "delete_endpoint", name, err)
	return err
}

// DeleteEndpointIf is DeleteEndpoint as the API asks for it: applied only
// when the stored endpoint meets cond (412 precondition_failed otherwise,
// and nothing changes), and refused for an endpoint the config manages
// (409 managed_by_config).
func (r *Registry) DeleteEndpointIf(ctx context.Context, name string, cond IfMatch) error {
	err := r.refuseManaged("endpoint", name)
	if err == nil {
		err = r.deleteEndpoint(ctx, name, cond)
	}
	r.audit.Record(ctx, "delete_endpoint", name, err)
	return err
}

// AddArm adds a registered version to an endpoint as an active arm; the
// change is audited.
func (r *Registry) AddArm(ctx context.Context, endpoint, arm string) (*Endpoint, error) {
	ep, err := r.addArm(ctx, endpoint, arm, IfMatch{})
	r.audit.Record(ctx, "add_arm", endpoint+"/"+arm, err)
	return ep, err
}

// AddArmIf is AddArm as the API asks for it: applied only when the stored
// endpoint meets cond (412 precondition_failed otherwise, and nothing
// changes), and refused for an endpoint the config manages (409
// managed_by_config; its auto_arms still add arms).
func (r *Registry) AddArmIf(ctx context.Context, endpoint, arm string, cond IfMatch) (*Endpoint, error) {
	if err := r.refuseManaged("endpoint", endpoint); err != nil {
		r.audit.Record(ctx, "add_arm", endpoint+"/"+arm, err)
		return nil, err
	}
	ep, err := r.addArm(ctx, endpoint, arm, cond)
	r.audit.Record(ctx, "add_arm", endpoint+"/"+arm, err)
	return ep, err
}

// canList reports whether the driver of backend type typ can list the
// versions its backend publishes (backend.Lister), which auto_arms needs.
func (r *Registry) canList(typ string) bool {
	d, ok := r.drivers.Lookup(typ)
	if !ok {
		return false
	}
	_, ok = d.(backend.Lister)
	return ok
}
