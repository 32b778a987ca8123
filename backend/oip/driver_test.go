package oip_test

import (
	"context"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/fault"
)

// The errors a user sees for an oip backend section, before any call to
// the server.
func TestSpecErrors(t *testing.T) {
	drivers := backend.NewDrivers(oip.Driver{})
	for _, tc := range []struct {
		name, raw, code, field, msg string
	}{
		{"no target", `{"type": "oip", "model_name": "r", "outputs": {"scores": "s"}}`, "missing_field", "backend.target", `needs a target, e.g. "triton:8001"`},
		{"target with a scheme", `{"type": "oip", "target": "http://h:8000", "model_name": "r", "outputs": {"scores": "s"}}`, "invalid_backend", "backend.target", "without a scheme"},
		{"http target with a resolver", `{"type": "oip", "target": "dns:///h:8000", "protocol": "http", "model_name": "r", "outputs": {"scores": "s"}}`, "invalid_backend", "backend.target", "without a scheme"},
		{"unknown protocol", `{"type": "oip", "target": "h:8001", "protocol": "rest", "model_name": "r", "outputs": {"scores": "s"}}`, "invalid_backend", "backend.protocol", `must be "grpc" or "http"`},
		{"no model name", `{"type": "oip", "target": "h:8001", "outputs": {"scores": "s"}}`, "missing_field", "backend.model_name", "needs the model_name"},
		{"no outputs", `{"type": "oip", "target": "h:8001", "model_name": "r"}`, "missing_field", "backend.outputs.scores", "map the model output"},
		{"no scores output", `{"type": "oip", "target": "h:8001", "model_name": "r", "outputs": {"ids": "i"}}`, "missing_field", "backend.outputs.scores", "map the model output"},
		{"ids same as scores", `{"type": "oip", "target": "h:8001", "model_name": "r", "outputs": {"ids": "s", "scores": "s"}}`, "invalid_backend", "backend.outputs.ids", "must differ"},
		{"unknown output role", `{"type": "oip", "target": "h:8001", "model_name": "r", "outputs": {"scores": "s", "logits": "l"}}`, "unknown_field", "backend.outputs.logits", "unknown field"},
		{"timeout", `{"type": "oip", "target": "h:8001", "model_name": "r", "outputs": {"scores": "s"}, "timeout_ms": -5}`, "invalid_backend", "backend.timeout_ms", "must be in 0..60000"},
		{"version not a string", `{"type": "oip", "target": "h:8001", "model_name": "r", "model_version": 3, "outputs": {"scores": "s"}}`, "invalid_type", "backend.model_version", ""},
		{"tls key without certificate", `{"type": "oip", "target": "h:8001", "model_name": "r", "outputs": {"scores": "s"}, "tls": {"key_file": "k.pem"}}`, "invalid_backend", "backend.tls.cert_file", "required with key_file"},
		{"unknown tls field", `{"type": "oip", "target": "h:8001", "model_name": "r", "outputs": {"scores": "s"}, "tls": {"ca": "x"}}`, "unknown_field", "backend.tls.ca", "unknown field"},
		{"tfserving field", `{"type": "oip", "target": "h:8001", "model_name": "r", "signature_name": "serving_default", "outputs": {"scores": "s"}}`, "unknown_field", "backend.signature_name", "unknown field"},
		{"miscased field", `{"type": "oip", "target": "h:8001", "Model_Name": "r", "outputs": {"scores": "s"}}`, "unknown_field", "backend.Model_Name", ""},
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

// A gRPC target may name a resolver.
func TestSpecGRPCResolver(t *testing.T) {
	if _, _, err := backend.NewDrivers(oip.Driver{}).Parse([]byte(`{"type": "oip", "target": "dns:///triton:8001", "model_name": "r", "outputs": {"scores": "s"}}`)); err != nil {
		t.Fatal(err)
	}
}

// The default protocol is filled in and stored; a stored section decodes
// back to the same config.
func TestSpecDefaults(t *testing.T) {
	drivers := backend.NewDrivers(oip.Driver{})
	typ, cfg, err := drivers.Parse([]byte(`{"type": "oip", "target": "triton:8001", "model_name": "r", "model_version": "3", "timeout_ms": 50, "outputs": {"ids": "i", "scores": "s"}, "tls": {"server_name": "triton"}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := backend.EncodeConfig(typ, cfg)
	want := `{"type":"oip","target":"triton:8001","protocol":"grpc","model_name":"r","model_version":"3","timeout_ms":50,"outputs":{"scores":"s","ids":"i"},"tls":{"server_name":"triton"}}`
	if string(got) != want {
		t.Fatalf("EncodeConfig = %s, want %s", got, want)
	}
	back, err := drivers.Decode(typ, []byte("{"+want[len(`{"type":"oip",`):]))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := backend.EncodeConfig(typ, back); string(again) != want {
		t.Fatalf("decoded again: %s", again)
	}
	if cfg.Timeout().Milliseconds() != 50 {
		t.Fatalf("timeout %s", cfg.Timeout())
	}
}

// The driver loads an unvalidated version without calling the server, and
// offers no version listing (so no auto_arms).
func TestDriver(t *testing.T) {
	d := oip.Driver{}
	if d.Type() != "oip" || d.SpanName() != "oip.infer" {
		t.Fatalf("type %q, span %q", d.Type(), d.SpanName())
	}
	if _, ok := any(d).(backend.Lister); ok {
		t.Fatal("the oip driver lists versions")
	}
	_, cfg, err := backend.NewDrivers(d).Parse([]byte(`{"type": "oip", "target": "127.0.0.1:1", "protocol": "http", "model_name": "r", "outputs": {"scores": "s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := d.Load(context.Background(), cfg, backend.LoadOptions{Model: "r", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.(*oip.Model).Close()
	if h, ok := sc.(backend.Health); !ok || h.Healthy() {
		t.Fatal("a version on a closed port starts healthy")
	}
	_, err = d.Load(context.Background(), cfg, backend.LoadOptions{Model: "r", Version: "1", Validate: true})
	if f := fault.As(err); f == nil || f.Code != "invalid_model" || f.Field != "backend.target" {
		t.Fatalf("validated on a closed port: %v", err)
	}
}
