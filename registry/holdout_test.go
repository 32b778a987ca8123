package registry

import (
	"context"
	"testing"

	"github.com/modelgate/modelgate/fault"
)

// A holdout names one of the endpoint's arms and a share in (0, 0.5];
// anything else is a 400 invalid_holdout on the field at fault.
func TestHoldoutValidation(t *testing.T) {
	ctx := context.Background()
	reg := newReg(t, openDB(t, t.TempDir()))
	for _, v := range []string{"1", "2"} {
		if _, _, err := reg.PutVersion(ctx, "mf", v, []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, holdout, field, msg string
	}{
		{"share zero", `{"arm": "mf@1", "share": 0}`, "policy.holdout.share", "must be in (0, 0.5]"},
		{"share negative", `{"arm": "mf@1", "share": -0.1}`, "policy.holdout.share", "must be in (0, 0.5]"},
		{"share above half", `{"arm": "mf@1", "share": 0.51}`, "policy.holdout.share", "must be in (0, 0.5]"},
		{"share missing", `{"arm": "mf@1"}`, "policy.holdout.share", "must be in (0, 0.5]"},
		{"arm missing", `{"share": 0.1}`, "policy.holdout.arm", `name one of the endpoint's arms, e.g. "mf@1"`},
		{"arm not an arm id", `{"arm": "mf", "share": 0.1}`, "policy.holdout.arm", `name one of the endpoint's arms, e.g. "mf@1"`},
		{"arm not the endpoint's", `{"arm": "mf@2", "share": 0.1}`, "policy.holdout.arm", `"mf@2" must be one of the endpoint's arms`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"arms": ["mf@1"], "policy": {"holdout": ` + tc.holdout + `}}`
			_, _, err := reg.PutEndpoint(ctx, "home", []byte(body))
			f := fault.As(err)
			if f == nil || f.Kind != fault.Invalid || f.Code != "invalid_holdout" || f.Field != tc.field || f.Message != tc.msg {
				t.Fatalf("got %#v, want invalid_holdout on %s: %q", err, tc.field, tc.msg)
			}
		})
	}
	for _, share := range []string{"0.05", "0.5"} {
		ep, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"], "policy": {"holdout": {"arm": "mf@2", "share": `+share+`}}}`))
		if err != nil {
			t.Fatalf("share %s: %v", share, err)
		}
		if h := ep.Policy.Holdout; h == nil || h.Arm != "mf@2" || h.Share <= 0 {
			t.Fatalf("share %s: holdout %+v", share, h)
		}
	}
	// Stored and read back; an endpoint without one has none.
	if h := reg.Snapshot().Endpoints["home"].Policy.Holdout; h == nil || h.Arm != "mf@2" || h.Share != 0.5 {
		t.Fatalf("snapshot holdout %+v", h)
	}
	ep, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"]}`))
	if err != nil || ep.Policy.Holdout != nil {
		t.Fatalf("without a holdout: %v, %+v", err, ep)
	}
}

// A config file's endpoint is checked alike before anything is stored.
func TestCheckEndpointHoldout(t *testing.T) {
	reg := newReg(t, openDB(t, t.TempDir()))
	f := fault.As(reg.CheckEndpoint("home", []byte(`{"arms": ["mf@1"], "policy": {"holdout": {"arm": "mf@2", "share": 0.1}}}`)))
	if f == nil || f.Code != "invalid_holdout" || f.Field != "policy.holdout.arm" {
		t.Fatalf("got %#v", f)
	}
	if err := reg.CheckEndpoint("home", []byte(`{"arms": ["mf@1"], "policy": {"holdout": {"arm": "mf@1", "share": 0.1}}}`)); err != nil {
		t.Fatal(err)
	}
}
