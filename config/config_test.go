package config

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadFull(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Models) != 2 || c.Models[0].Version != "1" || c.Models[1].Version != "canary-2" {
		t.Fatalf("models: %+v", c.Models)
	}
	var body struct {
		Backend struct{ Path string } `json:"backend"`
	}
	if err := json.Unmarshal(c.Models[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("testdata", "models", "mf", "1"); body.Backend.Path != want {
		t.Errorf("relative path resolved to %q, want %q (against the config's directory)", body.Backend.Path, want)
	}
	if err := json.Unmarshal(c.Models[1].Body, &body); err != nil || body.Backend.Path != "/abs/ranker" {
		t.Errorf("absolute path changed: %q", body.Backend.Path)
	}
	if strings.Contains(string(c.Models[0].Body), `"name"`) || strings.Contains(string(c.Models[0].Body), `"version"`) {
		t.Errorf("name/version must not be in the API body: %s", c.Models[0].Body)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].Name != "home" || !strings.Contains(string(c.Endpoints[0].Body), `"segment_by":["surface"]`) {
		t.Fatalf("endpoints: %+v", c.Endpoints)
	}
	if c.Report.Interval != 30*time.Second || c.Report.Retention != 48*time.Hour {
		t.Errorf("report: %+v", c.Report)
	}
	if c.Limits != (Limits{MaxBodyBytes: 2048, MaxConcurrent: 10, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second, ShutdownTimeout: 4 * time.Second, ShadowWorkers: 16}) {
		t.Errorf("limits: %+v", c.Limits)
	}
	if len(c.SigningKeys) != 1 || len(c.SigningKeys[0]) != 32 {
		t.Errorf("signing keys: %x", c.SigningKeys)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "modles: []\n", "field modles not found"},
		{"model without name", "models: [{version: 1, backend: {type: embedded}}]\n", "models[0]: name: required"},
		{"model without version", "models: [{name: mf, backend: {type: embedded}}]\n", "models[0]: version: required"},
		{"version is a list", "models: [{name: mf, version: [1], backend: {type: embedded}}]\n", "version: must be a string or a number"},
		{"endpoint without name", "endpoints: [{arms: [mf@1]}]\n", "endpoints[0].name: required"},
		{"bad interval", "report: {interval: soon}\n", "report.interval"},
		{"interval too short", "report: {interval: 10ms}\n", "report.interval"},
		{"tiny body limit", "limits: {max_body_bytes: 10}\n", "limits.max_body_bytes"},
		{"negative concurrency", "limits: {max_concurrent: -1}\n", "limits.max_concurrent"},
		{"no shadow workers", "limits: {shadow_workers: 0}\n", "limits.shadow_workers"},
		{"bad timeout", "limits: {read_timeout: forever}\n", "limits.read_timeout"},
		{"short signing key", "signing_keys: [abcd]\n", "signing_keys[0]"},
		{"unknown registry owner", "registry: {managed: git}\n", `registry.managed: "git" is not api or config`},
		{"unknown registry key", "registry: {owner: config}\n", "field owner not found"},
		{"not yaml", "models: [\n", "did not find expected"},
		// A repeated key is an error at any depth, as in the HTTP API's
		// JSON bodies: YAML decoding rejects it before any body is built.
		{"repeated top-level key", "report: {interval: 1m}\nreport: {interval: 2m}\n", `mapping key "report" already defined`},
		{"repeated key in an endpoint", "endpoints: [{name: home, arms: [mf@1], arms: [mf@2]}]\n", `mapping key "arms" already defined`},
		{"repeated key in a policy", "endpoints:\n  - name: home\n    arms: [mf@1]\n    policy:\n      type: uniform\n      type: thompson\n", `line 6: mapping key "type" already defined`},
		{"repeated model version", "models:\n  - name: mf\n    version: 1\n    version: 2\n    backend: {type: embedded, path: /m}\n", `line 4: mapping key "version" already defined`},
		{"repeated key in a model's metadata", "models:\n  - name: mf\n    version: 1\n    backend: {type: embedded, path: /m}\n    metadata: {a: 1, a: 2}\n", `mapping key "a" already defined`},
		{"repeated key in a feature spec", "models:\n  - name: mf\n    version: 1\n    backend: {type: embedded, path: /m}\n    features:\n      inputs:\n        u: {from: user_id}\n        u: {from: user_id}\n", `mapping key "u" already defined`},
		{"wrong-case top-level key", "Models: []\n", "field Models not found"},
		{"wrong-case limits key", "limits: {Max_Body_Bytes: 4096}\n", "field Max_Body_Bytes not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), ".")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestVersionTakenAsWritten(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"1", "1"}, {"1.10", "1.10"}, {"2.0", "2.0"}, {"007", "007"}, {`"canary"`, "canary"}, {"20261101", "20261101"},
	} {
		c, err := Parse([]byte("models: [{name: m, version: "+tc.yaml+", backend: {type: embedded, path: /m}}]\n"), ".")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Models[0].Version; got != tc.want {
			t.Errorf("version: %s read as %q, want %q", tc.yaml, got, tc.want)
		}
	}
}

func TestEmptyAndDefaults(t *testing.T) {
	c, err := Parse(nil, ".")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Limits != d.Limits || c.Report != d.Report || len(c.Models) != 0 {
		t.Fatalf("empty config %+v, want defaults %+v", c, d)
	}
	if d.Limits.MaxBodyBytes != 1<<20 || d.Report.Interval != time.Minute || d.Report.Retention != 720*time.Hour || d.Registry.Managed != ManagedAPI {
		t.Fatalf("defaults differ from the documented ones: %+v", d)
	}
	if c, err := Parse([]byte("registry: {managed: config}\n"), "."); err != nil || c.Registry.Managed != ManagedConfig || c.Path != "" {
		t.Fatalf("registry.managed config: %+v, %v", c.Registry, err)
	}
}
