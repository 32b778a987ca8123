package registry

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/fault"
)

// A policy's reward is a click (the default, also when said) or a value
// with a cap in (0, 1e12]; anything else is a 400 invalid_policy on the
// field at fault. A click endpoint's JSON has no reward field, as before
// the field existed.
func TestRewardPolicy(t *testing.T) {
	ctx := context.Background()
	reg := newReg(t, openDB(t, t.TempDir()))
	if _, _, err := reg.PutVersion(ctx, "mf", "1", []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, reward, field, msg string
	}{
		{"unknown type", `{"type": "revenue"}`, "policy.reward.type", "must be click or value"},
		{"no type", `{"cap": 10}`, "policy.reward.type", "must be click or value"},
		{"value without cap", `{"type": "value"}`, "policy.reward.cap", "a value reward needs a cap in (0, 1e+12]"},
		{"cap zero", `{"type": "value", "cap": 0}`, "policy.reward.cap", "a value reward needs a cap in (0, 1e+12]"},
		{"cap negative", `{"type": "value", "cap": -5}`, "policy.reward.cap", "a value reward needs a cap in (0, 1e+12]"},
		{"cap too large", `{"type": "value", "cap": 1e13}`, "policy.reward.cap", "a value reward needs a cap in (0, 1e+12]"},
		{"click with a cap", `{"type": "click", "cap": 10}`, "policy.reward.cap", "applies to value rewards only"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "policy": {"reward": `+tc.reward+`}}`))
			f := fault.As(err)
			if f == nil || f.Kind != fault.Invalid || f.Code != "invalid_policy" || f.Field != tc.field || f.Message != tc.msg {
				t.Fatalf("got %#v, want invalid_policy on %s: %q", err, tc.field, tc.msg)
			}
		})
	}
	good := []struct {
		name, policy string
		cap          float64
		json         string // the reward as the endpoint's JSON shows it; "" for none
	}{
		{"default", `{}`, 0, ""},
		{"click", `{"reward": {"type": "click"}}`, 0, ""},
		{"value", `{"reward": {"type": "value", "cap": 100}}`, 100, `"reward":{"type":"value","cap":100}`},
		{"fractional cap", `{"reward": {"type": "value", "cap": 0.5}}`, 0.5, `"reward":{"type":"value","cap":0.5}`},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			ep, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "policy": `+tc.policy+`}`))
			if err != nil {
				t.Fatal(err)
			}
			if c := reg.Snapshot().Endpoints["home"].Policy.Reward.ValueCap(); c != tc.cap || ep.Policy.Reward.ValueCap() != tc.cap {
				t.Fatalf("cap %g, want %g", c, tc.cap)
			}
			raw, _ := json.Marshal(ep)
			if got := strings.Contains(string(raw), `"reward"`); got != (tc.json != "") || (tc.json != "" && !strings.Contains(string(raw), tc.json)) {
				t.Fatalf("endpoint JSON %s, want reward %q", raw, tc.json)
			}
		})
	}
}
