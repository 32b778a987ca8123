package gateway

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/config"
)

// The config seeds a data dir once per entry: a later start keeps what the
// API changed, and an endpoint deleted through the API stays deleted.
func TestConfigSeedsOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := newTestGateway(demoConfig(t, ""), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.reg.SetArmState(ctx, "home", "mf@1", "paused"); err != nil {
		t.Fatal(err)
	}
	a.Close()

	a, err = newTestGateway(demoConfig(t, ""), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if ep, _ := a.reg.Endpoint("home"); ep.ArmStates["mf@1"] != "paused" {
		t.Fatalf("a restart with the same config resumed a paused arm: %v", ep.ArmStates)
	}
	if err := a.reg.DeleteEndpoint(ctx, "home"); err != nil {
		t.Fatal(err)
	}
	a.Close()

	a, err = newTestGateway(demoConfig(t, ""), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if a.reg.HasEndpoint("home") {
		t.Fatal("a restart with the same config re-created an endpoint deleted through the API")
	}
	a.Close()

	// Every entry is validated on every start, stored or not.
	bad := demoConfig(t, "")
	bad.Endpoints[0].Body = []byte(strings.Replace(string(bad.Endpoints[0].Body), `"arms"`, `"arms_typo": 1, "arms"`, 1))
	if _, err := newTestGateway(bad, dir, log); err == nil || !strings.Contains(err.Error(), "arms_typo") {
		t.Fatalf("a typo in a stored config entry must fail the start, got %v", err)
	}
}

// A click on a prediction signed with the previous signing key is accepted
// after the key is rotated (new key first, old one kept); with the old key
// dropped, it is refused.
func TestSigningKeyRotation(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := strings.Repeat("11", 32), strings.Repeat("22", 32)
	with := func(keys string, f func(url string)) {
		t.Helper()
		url, stop := runOn(t, demoConfig(t, "signing_keys: ["+keys+"]\n"), dir)
		f(url)
		stop()
	}
	var rec recResp
	with(k1, func(url string) {
		call(t, "POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, &rec)
	})
	click := func(item string) map[string]any {
		return map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": item}}}
	}
	with(k2+", "+k1, func(url string) {
		var fb fbResp
		if st := call(t, "POST", url+"/v1/feedback", click(rec.Items[0].ID), &fb); st != 200 || fb.Accepted != 1 {
			t.Fatalf("click on an old-key token after rotation: %d %+v", st, fb)
		}
	})
	with(k2, func(url string) {
		var fb fbResp
		if call(t, "POST", url+"/v1/feedback", click(rec.Items[1].ID), &fb); len(fb.Rejected) != 1 || fb.Rejected[0].Code != "invalid_prediction_id" {
			t.Fatalf("with the old key dropped: %+v", fb)
		}
	})
}

// The config's models and endpoints are the HTTP API's bodies, as strict:
// a wrong-case key fails the start naming the entry and the field's path,
// once.
func TestConfigEntriesAreStrictJSON(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const models = "models:\n  - name: mf\n    version: 1\n    backend: {type: embedded, path: models/mf/1}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"wrong-case endpoint key", models + "endpoints:\n  - name: home\n    Arms: [mf@1]\n",
			`config: endpoint home: Arms: unknown field; did you mean "arms"? (names are case-sensitive)`},
		{"wrong-case policy key", models + "endpoints:\n  - name: home\n    arms: [mf@1]\n    policy: {Segment_By: [surface]}\n",
			`config: endpoint home: policy.Segment_By: unknown field; did you mean "segment_by"?`},
		{"wrong-case backend key", "models:\n  - name: mf\n    version: 1\n    backend: {type: embedded, Path: models/mf/1}\n",
			`config: model mf@1: backend.Path: unknown field; did you mean "path"?`},
		{"wrong-case feature spec key", models + "    features: {Inputs: {}}\n",
			`config: model mf@1: features.Inputs: unknown key (a feature spec has only "inputs")`},
		{"a bad value", models + "endpoints:\n  - name: home\n    arms: [mf@1]\n    policy: {min_share: 2}\n",
			"config: endpoint home: policy.min_share: must be in [0, 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), demoDir)
			if err != nil {
				t.Fatal(err)
			}
			a, err := newTestGateway(cfg, t.TempDir(), log)
			if err == nil {
				a.Close()
				t.Fatalf("the start succeeded, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want %q", err, tc.want)
			}
		})
	}
}
