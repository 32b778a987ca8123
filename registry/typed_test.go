package registry

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/store"
)

func TestEnumsValid(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
		got   bool
	}{
		{"thompson", true, PolicyType("thompson").Valid()},
		{"discounted-thompson", true, PolicyType("discounted-thompson").Valid()},
		{"uniform", true, PolicyType("uniform").Valid()},
		{"policy type by another case", false, PolicyType("Thompson").Valid()},
		{"empty policy type", false, PolicyType("").Valid()},
		{"egreedy", false, PolicyType("egreedy").Valid()},
		{"serve", true, TrialEvent("serve").Valid()},
		{"impression", true, TrialEvent("impression").Valid()},
		{"click is not a trial event", false, TrialEvent("click").Valid()},
		{"empty trial event", false, TrialEvent("").Valid()},
		{"active", true, ArmState("active").Valid()},
		{"paused", true, ArmState("paused").Valid()},
		{"asleep", false, ArmState("asleep").Valid()},
		{"empty arm state", false, ArmState("").Valid()},
	}
	for _, tc := range tests {
		if tc.got != tc.valid {
			t.Errorf("%s: Valid() = %v, want %v", tc.name, tc.got, tc.valid)
		}
	}
}

// Each typed field refuses what it refused as a string, with the same
// code, field and message; durations are judged by their field's range.
// Every policy type draws from its prior and floor; only uniform changes
// the kind (discounted-thompson discounts the counts, not the sampling).
func TestPolicyBandit(t *testing.T) {
	tests := []struct {
		typ  PolicyType
		kind bandit.Kind
	}{
		{PolicyThompson, bandit.Thompson},
		{PolicyDiscountedThompson, bandit.Thompson},
		{PolicyUniform, bandit.Uniform},
	}
	for _, tc := range tests {
		t.Run(string(tc.typ), func(t *testing.T) {
			p := Policy{Type: tc.typ, Prior: Prior{Alpha: 2, Beta: 30}, MinShare: 0.05}
			want := bandit.Policy{Kind: tc.kind, Prior: bandit.Prior{Alpha: 2, Beta: 30}, MinShare: 0.05}
			if got := p.Bandit(); got != want {
				t.Errorf("Bandit() = %+v, want %+v", got, want)
			}
		})
	}
}

func TestTypedFieldErrors(t *testing.T) {
	reg := newReg(t, openDB(t, t.TempDir()))
	tests := []struct {
		name, body, code, field, msg string
	}{
		{"unknown policy", `{"policy": {"type": "egreedy"}}`, "invalid_policy", "policy.type",
			`unknown policy "egreedy" (want thompson, discounted-thompson, uniform or linear-thompson)`},
		{"policy type is a string", `{"policy": {"type": 1}}`, "invalid_type", "policy.type", "expected a string, got JSON number 1"},
		{"unknown trials_on", `{"policy": {"trials_on": "click"}}`, "invalid_policy", "policy.trials_on", "must be serve or impression"},
		{"attribution window not a duration", `{"policy": {"attribution_window": "1 day"}}`, "invalid_policy", "policy.attribution_window",
			`must be a duration like "24h" or "90m", > 0 and ≤ 2160h`},
		{"attribution window in days", `{"policy": {"attribution_window": "1d"}}`, "invalid_policy", "policy.attribution_window",
			`must be a duration like "24h" or "90m", > 0 and ≤ 2160h`},
		{"attribution window zero", `{"policy": {"attribution_window": "0s"}}`, "invalid_policy", "policy.attribution_window",
			`must be a duration like "24h" or "90m", > 0 and ≤ 2160h`},
		{"attribution window too long", `{"policy": {"attribution_window": "2161h"}}`, "invalid_policy", "policy.attribution_window",
			`must be a duration like "24h" or "90m", > 0 and ≤ 2160h`},
		{"attribution window is a string", `{"policy": {"attribution_window": 24}}`, "invalid_type", "policy.attribution_window",
			"expected a string, got JSON number 24"},
		{"half-life missing", `{"policy": {"type": "discounted-thompson"}}`, "invalid_policy", "policy.half_life",
			`discounted-thompson needs a half_life, e.g. "72h"`},
		{"half-life too short", `{"policy": {"type": "discounted-thompson", "half_life": "59s"}}`, "invalid_policy", "policy.half_life",
			"must be a duration from 1m to 8760h"},
		{"half-life empty", `{"policy": {"type": "discounted-thompson", "half_life": ""}}`, "invalid_policy", "policy.half_life",
			"must be a duration from 1m to 8760h"},
		{"half-life on thompson", `{"policy": {"half_life": "1h"}}`, "invalid_policy", "policy.half_life",
			"applies to discounted-thompson only"},
		{"sticky ttl missing", `{"policy": {"sticky": {}}}`, "invalid_policy", "policy.sticky.ttl",
			`must be a duration from 1s to 720h, e.g. "30m"`},
		{"sticky ttl too long", `{"policy": {"sticky": {"ttl": "721h"}}}`, "invalid_policy", "policy.sticky.ttl",
			`must be a duration from 1s to 720h, e.g. "30m"`},
		{"sticky unknown field", `{"policy": {"sticky": {"TTL": "1h"}}}`, "unknown_field", "policy.sticky.TTL",
			`unknown field; did you mean "ttl"? (names are case-sensitive)`},
		{"guardrail window too short", `{"policy": {"guardrails": {"max_error_rate": 0.1, "window": "500ms"}}}`, "invalid_policy",
			"policy.guardrails.window", "must be a duration from 1s to 24h"},
		{"guardrail window not a duration", `{"policy": {"guardrails": {"max_error_rate": 0.1, "window": "soon"}}}`, "invalid_policy",
			"policy.guardrails.window", "must be a duration from 1s to 24h"},
		{"guardrails without a limit", `{"policy": {"guardrails": {"window": "1m"}}}`, "invalid_policy",
			"policy.guardrails", "set max_error_rate, max_p99_ms or both"},
		{"auto_arms interval too short", `{"auto_arms": {"model": "mf", "interval": "100ms"}}`, "invalid_auto_arms",
			"auto_arms.interval", `must be a duration from 1s to 24h, e.g. "30s"`},
		{"auto_arms interval too long", `{"auto_arms": {"model": "mf", "interval": "25h"}}`, "invalid_auto_arms",
			"auto_arms.interval", `must be a duration from 1s to 24h, e.g. "30s"`},
		{"linear without features", `{"policy": {"type": "linear-thompson"}}`, "invalid_policy", "policy.context_features",
			`linear-thompson needs context_features, e.g. ["surface"]`},
		{"linear with segments", `{"policy": {"type": "linear-thompson", "segment_by": ["surface"], "context_features": ["surface"]}}`,
			"invalid_policy", "policy.segment_by", "linear-thompson is contextual: name the context keys in context_features, not segment_by"},
		{"linear over 64 dimensions", `{"policy": {"type": "linear-thompson", "context_features": [{"context": "a", "buckets": 40}, {"context": "b", "buckets": 23}, "c"]}}`,
			"invalid_policy", "policy.context_features", "72 dimensions or more with the constant; at most 64"},
		{"linear at 64 dimensions is fine but 65 is not", `{"policy": {"type": "linear-thompson", "context_features": [{"context": "a", "buckets": 40}, {"context": "b", "buckets": 23}, {"feature": "x"}]}}`,
			"invalid_policy", "policy.context_features", "65 dimensions or more with the constant; at most 64"},
		{"linear lambda zero", `{"policy": {"type": "linear-thompson", "context_features": ["surface"], "lambda": 0}}`, "invalid_policy", "policy.lambda", "must be > 0 and ≤ 1e6"},
		{"linear noise negative", `{"policy": {"type": "linear-thompson", "context_features": ["surface"], "noise": -1}}`, "invalid_policy", "policy.noise", "must be > 0 and ≤ 1000"},
		{"linear feature and context", `{"policy": {"type": "linear-thompson", "context_features": [{"context": "s", "feature": "age"}]}}`,
			"invalid_policy", "policy.context_features[0]", "set exactly one of context and feature"},
		{"linear repeated key", `{"policy": {"type": "linear-thompson", "context_features": ["s", {"context": "s", "values": ["a"]}]}}`,
			"invalid_policy", "policy.context_features[1]", "context keys and feature names are 1-128 bytes, each used once"},
		{"linear unknown member", `{"policy": {"type": "linear-thompson", "context_features": [{"key": "s"}]}}`,
			"invalid_policy", "policy.context_features[0]", `a context key, {"context": K, "values": [...]}, {"context": K, "buckets": B} or {"feature": F, "mean": M, "std": S}`},
		{"linear std zero", `{"policy": {"type": "linear-thompson", "context_features": [{"feature": "age", "std": 0}]}}`,
			"invalid_policy", "policy.context_features[0].std", "must be > 0"},
		{"linear fields on thompson", `{"policy": {"lambda": 2}}`, "invalid_policy", "policy.lambda", "applies to linear-thompson only"},
		{"auto_arms without a model", `{"auto_arms": {"interval": "1m"}}`, "invalid_auto_arms",
			"auto_arms.model", "name the model to watch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"arms": ["mf@1"], ` + strings.TrimPrefix(tc.body, "{")
			f := fault.As(reg.CheckEndpoint("home", []byte(body)))
			if f == nil || f.Code != tc.code || f.Field != tc.field || f.Message != tc.msg {
				t.Fatalf("got %#v, want %s on %s: %q", f, tc.code, tc.field, tc.msg)
			}
		})
	}
	if _, _, err := reg.PutVersion(context.Background(), "mf", "1", []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutEndpoint(context.Background(), "home", []byte(`{"arms": ["mf@1"]}`)); err != nil {
		t.Fatal(err)
	}
	f := fault.As(func() error { _, err := reg.SetArmState(context.Background(), "home", "mf@1", "asleep"); return err }())
	if f == nil || f.Code != "invalid_state" || f.Field != "state" || f.Message != `must be "active" or "paused"` {
		t.Fatalf("arm state asleep: got %#v", f)
	}
}

// A stored endpoint in the data-dir format reads into the typed fields and
// writes back byte for byte: enums and durations keep their text ("90m"
// is not rewritten as "1h30m0s").
func TestStoredEndpointRoundTrip(t *testing.T) {
	for _, raw := range []string{
		`{"name":"home","arms":["mf@1","mf@2"],"arm_states":{"mf@1":"active","mf@2":"paused"},"arm_reasons":{"mf@2":"paused by guardrail: error rate"},` +
			`"policy":{"type":"discounted-thompson","prior":{"alpha":1,"beta":1},"segment_by":["surface"],"min_share":0.01,"trials_on":"impression",` +
			`"attribution_window":"90m","stop_rule":{"p_best":0.95,"value_remaining":0.01,"min_trials":1000},"half_life":"1.5h","segment_prior_weight":0,` +
			`"sticky":{"ttl":"1h30m"},"guardrails":{"max_error_rate":0.1,"max_p99_ms":0,"window":"90s","min_requests":20},"max_segments":1000},` +
			`"fallback":"mf@1","auto_arms":{"model":"mf","interval":"10s"},"created_at":"2026-11-02T10:00:00Z","updated_at":"2026-11-02T10:00:00Z","revision":3}`,
		`{"name":"home","arms":["mf@1"],"arm_states":{"mf@1":"active"},"policy":{"type":"uniform","prior":{"alpha":1,"beta":1},"segment_by":[],` +
			`"min_share":0.01,"trials_on":"serve","attribution_window":"24h","stop_rule":{"p_best":0.95,"value_remaining":0.01,"min_trials":1000},` +
			`"segment_prior_weight":0,"max_segments":1000},"created_at":"2026-11-02T10:00:00Z","updated_at":"2026-11-02T10:00:00Z","revision":1}`,
	} {
		ep, err := decodeEndpoint([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(ep)
		if err != nil || string(out) != raw {
			t.Fatalf("round trip changed the record (%v):\n got %s\nwant %s", err, out, raw)
		}
	}
}

// The API's answer and the stored record echo a body's durations and enums
// as written, whether the body came over HTTP (JSON) or from the config
// file (YAML), and after a restart.
func TestBodiesEchoAsWritten(t *testing.T) {
	const yamlDoc = `endpoints:
  - name: home
    arms: [mf@1]
    policy:
      type: discounted-thompson
      half_life: 1.5h
      attribution_window: 90m
      trials_on: impression
      sticky: {ttl: 45m}
      guardrails: {max_error_rate: 0.2, window: 2m}
    auto_arms: {model: mf, interval: 1m30s}
`
	cfg, err := config.Parse([]byte(yamlDoc), ".")
	if err != nil {
		t.Fatal(err)
	}
	jsonBody := `{"arms": ["mf@1"], "policy": {"type": "discounted-thompson", "half_life": "1.5h", "attribution_window": "90m",
		"trials_on": "impression", "sticky": {"ttl": "45m"}, "guardrails": {"max_error_rate": 0.2, "window": "2m"}},
		"auto_arms": {"model": "mf", "interval": "1m30s"}}`
	want := []string{`"type":"discounted-thompson"`, `"half_life":"1.5h"`, `"attribution_window":"90m"`, `"trials_on":"impression"`,
		`"sticky":{"ttl":"45m"}`, `"window":"2m"`, `"interval":"1m30s"`, `"arm_states":{"mf@1":"active"}`}
	for _, src := range []struct{ name, body string }{{"json", jsonBody}, {"yaml", string(cfg.Endpoints[0].Body)}} {
		t.Run(src.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			db := openDB(t, dir)
			r := newReg(t, db)
			if _, _, err := r.PutVersion(ctx, "mf", "1", []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
				t.Fatal(err)
			}
			ep, _, err := r.PutEndpoint(ctx, "home", []byte(src.body))
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := json.Marshal(ep)
			m, _ := db.List(ctx, store.Endpoints)
			stored := m["home"]
			db.Close()
			db = openDB(t, dir)
			defer db.Close()
			reloaded, err := newReg(t, db).Endpoint("home")
			if err != nil {
				t.Fatal(err)
			}
			again, _ := json.Marshal(reloaded)
			for _, doc := range []struct {
				name string
				b    []byte
			}{{"answer", answer}, {"stored", stored}, {"after restart", again}} {
				for _, w := range want {
					if !strings.Contains(string(doc.b), w) {
						t.Errorf("%s lacks %s: %s", doc.name, w, doc.b)
					}
				}
			}
		})
	}
}

// The context vector of a linear-thompson policy: the constant first, then
// each feature's dimensions in order, named, with the documented values.
func TestLinearModelVector(t *testing.T) {
	reg := newReg(t, openDB(t, t.TempDir()))
	body := `{"arms": ["mf@1"], "policy": {"type": "linear-thompson", "lambda": 2, "context_features": [
		{"context": "surface", "values": ["home", "music"]}, {"feature": "age", "mean": 35, "std": 12}, {"context": "country", "buckets": 3}, "device"]}}`
	in, pol, err := decodeEndpointBody("home", []byte(body))
	if err != nil || in == nil {
		t.Fatal(err)
	}
	if err := reg.CheckEndpoint("home", []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := pol.LinearModel()
	wantNames := []string{"1", "surface=home", "surface=music", "age", "country#0", "country#1", "country#2",
		"device#0", "device#1", "device#2", "device#3", "device#4", "device#5", "device#6", "device#7"}
	if !slices.Equal(m.Names(), wantNames) || m.Dims() != len(wantNames) {
		t.Fatalf("names %v, want %v", m.Names(), wantNames)
	}
	if pol.Lambda != 2 || pol.Noise != DefaultLinearNoise {
		t.Fatalf("lambda %v noise %v", pol.Lambda, pol.Noise)
	}
	x := make([]float64, 64)
	got := m.Vector(map[string]string{"surface": "music", "country": "fr"}, map[string]any{"age": 47.0}, x)
	want := make([]float64, len(wantNames))
	want[0], want[2], want[3] = 1, 1, 1 // (47 − 35)/12
	want[4+featurizer.HashBucket("fr", 3)] = 1
	if !slices.Equal(got, want) {
		t.Fatalf("x = %v, want %v", got, want)
	}
	// Unknown value, absent keys, a non-number and a wild value.
	got = m.Vector(map[string]string{"surface": "news"}, map[string]any{"age": 1e9}, x)
	want = make([]float64, len(wantNames))
	want[0], want[3] = 1, MaxLinearZ
	if !slices.Equal(got, want) {
		t.Fatalf("x = %v, want %v", got, want)
	}
	if got = m.Vector(nil, map[string]any{"age": "old"}, x); got[3] != 0 {
		t.Fatalf("a string age: x[3] = %v, want 0", got[3])
	}
	// The layout survives storing and reading back, and changes with it.
	raw, err := json.Marshal(&Endpoint{Name: "home", Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := decodeEndpoint(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Policy.LinearModel().Layout() != m.Layout() {
		t.Fatal("layout changed by a store round trip")
	}
	pol.ContextFeatures[1].Std = 10
	if newLinearModel(pol.ContextFeatures).Layout() == m.Layout() {
		t.Fatal("a different scale kept the layout")
	}
}

// A bare context_features name that is an input of an arm's feature spec
// reads what that input reads: a zscore as a standardised number, a vocab
// of a context key as its values; other names stay context keys hashed
// into buckets.
func TestLinearBareNamesFromFeatureSpec(t *testing.T) {
	ctx := context.Background()
	reg := newReg(t, openDB(t, t.TempDir()))
	spec := `{"backend": {"type": "test", "path": "/m"}, "features": {"inputs": {
		"age": {"from": "features.age", "transform": "zscore", "mean": 35, "std": 12, "default": 35, "dtype": "float32"},
		"surface": {"from": "context.surface", "transform": "vocab", "vocab": ["home", "music"], "oov": 0, "dtype": "int64"}}}}`
	if _, _, err := reg.PutVersion(ctx, "mf", "1", []byte(spec)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutVersion(ctx, "mf", "2", []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
		t.Fatal(err)
	}
	ep, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@2", "mf@1"], "policy": {"type": "linear-thompson", "context_features": ["age", "surface", "device"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ContextFeature{{Feature: "age", Mean: 35, Std: 12}, {Context: "surface", Values: []string{"home", "music"}}, {Context: "device", Buckets: DefaultLinearBuckets}}
	got := ep.Policy.ContextFeatures
	if len(got) != len(want) {
		t.Fatalf("features %+v", got)
	}
	for i := range want {
		if got[i].Feature != want[i].Feature || got[i].Context != want[i].Context || got[i].Mean != want[i].Mean ||
			got[i].Std != want[i].Std || !slices.Equal(got[i].Values, want[i].Values) || got[i].Buckets != want[i].Buckets {
			t.Fatalf("feature %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if names := ep.Policy.LinearModel().Names(); !slices.Equal(names[:5], []string{"1", "age", "surface=home", "surface=music", "device#0"}) {
		t.Fatalf("names %v", names)
	}
}
