package tfserving_test

import (
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/fault"
)

// The errors a user sees for a tfserving backend section, before any call
// to the server.
func TestSpecErrors(t *testing.T) {
	drivers := backend.NewDrivers(tfserving.NewDriver(tfserving.NewPool()))
	for _, tc := range []struct {
		name, raw, code, field, msg string
	}{
		{"no target", `{"type": "tfserving", "model_name": "r", "outputs": {"scores": "s"}}`, "missing_field", "backend.target", `needs a target, e.g. "tfserving:8500"`},
		{"no model name", `{"type": "tfserving", "target": "h:8500", "outputs": {"scores": "s"}}`, "missing_field", "backend.model_name", "needs the model_name TF Serving serves"},
		{"version and label", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "version": 2, "version_label": "canary", "outputs": {"scores": "s"}}`, "invalid_backend", "backend.version_label", "give version or version_label, not both"},
		{"negative version", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "version": -1, "outputs": {"scores": "s"}}`, "invalid_backend", "backend.version", "must be ≥ 0"},
		{"no outputs", `{"type": "tfserving", "target": "h:8500", "model_name": "r"}`, "missing_field", "backend.outputs.scores", "map the signature output holding the scores"},
		{"no scores output", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "outputs": {"ids": "i"}}`, "missing_field", "backend.outputs.scores", "map the signature output"},
		{"batching", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "outputs": {"scores": "s"}, "batching": {"max_batch_size": 4}}`, "invalid_backend", "backend.batching", "applies to onnx backends only"},
		{"timeout", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "outputs": {"scores": "s"}, "timeout_ms": -5}`, "invalid_backend", "backend.timeout_ms", "must be in 0..60000"},
		{"unknown tls field", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "outputs": {"scores": "s"}, "tls": {"ca": "x"}}`, "unknown_field", "backend.tls.ca", "unknown field"},
		{"version not a number", `{"type": "tfserving", "target": "h:8500", "model_name": "r", "version": "2", "outputs": {"scores": "s"}}`, "invalid_type", "backend.version", "expected an integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := drivers.Parse([]byte(tc.raw))
			f := fault.As(err)
			if f == nil || f.Code != tc.code || f.Field != tc.field || !strings.Contains(f.Message, tc.msg) {
				t.Fatalf("Parse(%s) = %v, want %s at %s saying %q", tc.raw, err, tc.code, tc.field, tc.msg)
			}
		})
	}
}

// The default signature is filled in and stored; auto_arms pins a copy of
// the spec to a published version number, dropping the label.
func TestSpecDefaultsAndConfigAt(t *testing.T) {
	d := tfserving.NewDriver(tfserving.NewPool())
	typ, cfg, err := backend.NewDrivers(d).Parse([]byte(`{"type": "tfserving", "target": "h:8500", "model_name": "r", "version_label": "canary", "outputs": {"scores": "s"}, "tls": {"server_name": "tf"}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := backend.EncodeConfig(typ, cfg)
	if want := `{"type":"tfserving","target":"h:8500","model_name":"r","version_label":"canary","signature_name":"serving_default","outputs":{"scores":"s"},"tls":{"server_name":"tf"}}`; string(got) != want {
		t.Fatalf("EncodeConfig = %s, want %s", got, want)
	}
	at, err := d.ConfigAt(cfg, "7")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = backend.EncodeConfig(typ, at)
	if want := `{"type":"tfserving","target":"h:8500","model_name":"r","version":7,"signature_name":"serving_default","outputs":{"scores":"s"},"tls":{"server_name":"tf"}}`; string(got) != want {
		t.Fatalf("ConfigAt(7) = %s, want %s", got, want)
	}
	if s := cfg.(*tfserving.Spec); s.Version != nil || s.VersionLabel != "canary" {
		t.Fatalf("ConfigAt changed the template: %+v", s)
	}
	if _, err := d.ConfigAt(cfg, "v2"); err == nil {
		t.Fatal("ConfigAt(v2): want an error, TF Serving versions are numbers")
	}
}
