package registry

import (
	"context"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/fault"
)

// Shadows name registered versions that are not arms, once each, with a
// share in (0, 1]; anything else is a 4xx on the field at fault and
// nothing is stored.
func TestShadowValidation(t *testing.T) {
	ctx := context.Background()
	reg := regWithVersions(t, "mf@1", "mf@2", "mf@3")
	tests := []struct {
		name, shadows, code, field string
	}{
		{"share zero", `[{"arm": "mf@2", "share": 0}]`, "invalid_shadow", "shadows[0].share"},
		{"share above one", `[{"arm": "mf@2", "share": 1.01}]`, "invalid_shadow", "shadows[0].share"},
		{"share missing", `[{"arm": "mf@2"}]`, "invalid_shadow", "shadows[0].share"},
		{"arm missing", `[{"share": 0.1}]`, "invalid_shadow", "shadows[0].arm"},
		{"one of the arms", `[{"arm": "mf@1", "share": 0.1}]`, "invalid_shadow", "shadows[0].arm"},
		{"twice", `[{"arm": "mf@2", "share": 0.1}, {"arm": "mf@2", "share": 0.2}]`, "invalid_shadow", "shadows[1].arm"},
		{"not registered", `[{"arm": "mf@9", "share": 0.1}]`, "unknown_model_version", "shadows[0].arm"},
		{"too many", `[{"arm":"a@1","share":1},{"arm":"a@2","share":1},{"arm":"a@3","share":1},{"arm":"a@4","share":1},{"arm":"a@5","share":1},{"arm":"a@6","share":1},{"arm":"a@7","share":1},{"arm":"a@8","share":1},{"arm":"a@9","share":1}]`, "invalid_shadow", "shadows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "shadows": `+tc.shadows+`}`))
			f := fault.As(err)
			if f == nil || f.Kind != fault.Invalid || f.Code != tc.code || f.Field != tc.field {
				t.Fatalf("got %#v, want %s on %s", err, tc.code, tc.field)
			}
			if reg.HasEndpoint("home") {
				t.Fatal("a refused endpoint was stored")
			}
		})
	}
	ep, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "shadows": [{"arm": "mf@2", "share": 1}, {"arm": "mf@3", "share": 0.25}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Shadow{{"mf@2", 1}, {"mf@3", 0.25}}
	if !slices.Equal(ep.Shadows, want) || !slices.Equal(reg.Snapshot().Endpoints["home"].Shadows, want) {
		t.Fatalf("shadows %+v, want %+v", ep.Shadows, want)
	}
	// A version a shadow uses is in use.
	if f := fault.As(reg.DeleteVersion(ctx, "mf", "3")); f == nil || f.Code != "version_in_use" {
		t.Fatalf("deleting a shadow's version: %v", f)
	}
	// The config file's endpoint is checked alike (all but registration).
	if f := fault.As(reg.CheckEndpoint("home", []byte(`{"arms": ["mf@1"], "shadows": [{"arm": "mf@1", "share": 0.5}]}`))); f == nil || f.Code != "invalid_shadow" {
		t.Fatalf("CheckEndpoint: %v", f)
	}
}

// Promoting a shadow makes it an active arm and removes it from the
// shadows, in one revision; the codes follow the contract's conventions.
func TestPromoteShadow(t *testing.T) {
	ctx := context.Background()
	reg := regWithVersions(t, "mf@1", "mf@2", "mf@3")
	before, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "shadows": [{"arm": "mf@2", "share": 0.5}, {"arm": "mf@3", "share": 0.1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if f := fault.As(first(reg.PromoteShadow(ctx, "home", "mf@2", IfMatch{Given: true, Revisions: []uint64{before.Revision + 7}}))); f == nil || f.Code != "precondition_failed" {
		t.Fatalf("stale If-Match: %v", f)
	}
	ep, err := reg.PromoteShadow(ctx, "home", "mf@2", IfMatch{Given: true, Revisions: []uint64{before.Revision}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ep.Arms, []string{"mf@1", "mf@2"}) || ep.ArmStates["mf@2"] != Active || !slices.Equal(ep.Shadows, []Shadow{{"mf@3", 0.1}}) || ep.Revision != before.Revision+1 {
		t.Fatalf("after promote: %+v", ep)
	}
	tests := []struct {
		name, endpoint, arm, code string
		kind                      fault.Kind
	}{
		{"promoted already", "home", "mf@2", "arm_exists", fault.Conflict},
		{"an arm", "home", "mf@1", "arm_exists", fault.Conflict},
		{"not a shadow", "home", "mf@9", "shadow_not_found", fault.NotFound},
		{"no endpoint", "nope", "mf@3", "endpoint_not_found", fault.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fault.As(first(reg.PromoteShadow(ctx, tc.endpoint, tc.arm, IfMatch{})))
			if f == nil || f.Code != tc.code || f.Kind != tc.kind {
				t.Fatalf("got %v, want %s", f, tc.code)
			}
		})
	}
	// Adding a shadow as an arm promotes it too: it is never both.
	ep, err = reg.AddArm(ctx, "home", "mf@3")
	if err != nil || len(ep.Shadows) != 0 || !slices.Contains(ep.Arms, "mf@3") {
		t.Fatalf("add a shadow as an arm: %v %+v", err, ep)
	}
}

func first[T any](v T, err error) error { return err }

// regWithVersions is a registry holding the given versions (test backend).
func regWithVersions(t *testing.T, arms ...string) *Registry {
	t.Helper()
	reg := newReg(t, openDB(t, t.TempDir()))
	for _, arm := range arms {
		name, version, _ := SplitArm(arm)
		if _, _, err := reg.PutVersion(context.Background(), name, version, []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}
