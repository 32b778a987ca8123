package onnx_test

import (
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/fault"
)

// The errors a user sees for an onnx backend section, before any model is
// read.
func TestSpecErrors(t *testing.T) {
	drivers := backend.NewDrivers(onnx.NewDriver("", 0))
	for _, tc := range []struct {
		name, raw, code, field, msg string
	}{
		{"no path", `{"type": "onnx", "outputs": {"scores": "scores"}}`, "missing_field", "backend.path", "an onnx backend needs a path"},
		{"batch size 0", `{"type": "onnx", "path": "/m", "batching": {"max_batch_size": 0}}`, "invalid_backend", "backend.batching", "max_batch_size is 1..4096"},
		{"batch size too large", `{"type": "onnx", "path": "/m", "batching": {"max_batch_size": 4097}}`, "invalid_backend", "backend.batching", "batch_timeout_us 0..1000000"},
		{"batch timeout too long", `{"type": "onnx", "path": "/m", "batching": {"max_batch_size": 8, "batch_timeout_us": 1000001}}`, "invalid_backend", "backend.batching", "max_batch_size is 1..4096"},
		{"tls", `{"type": "onnx", "path": "/m", "tls": {}}`, "invalid_backend", "backend.tls", "applies to remote backends only"},
		{"timeout", `{"type": "onnx", "path": "/m", "timeout_ms": 60001}`, "invalid_backend", "backend.timeout_ms", "must be in 0..60000"},
		{"unknown batching field", `{"type": "onnx", "path": "/m", "batching": {"max_batch": 8}}`, "unknown_field", "backend.batching.max_batch", "unknown field"},
		{"outputs not an object", `{"type": "onnx", "path": "/m", "outputs": "scores"}`, "invalid_type", "backend.outputs", "expected an object"},
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

// A section encodes back with its members in the order the API shows them.
func TestSpecEncodes(t *testing.T) {
	raw := `{"type":"onnx","path":"/m/3","timeout_ms":20,"outputs":{"scores":"s","ids":"i"},"batching":{"max_batch_size":32,"batch_timeout_us":200}}`
	typ, cfg, err := backend.NewDrivers(onnx.NewDriver("", 0)).Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := backend.EncodeConfig(typ, cfg); err != nil || string(got) != raw {
		t.Fatalf("EncodeConfig = %s, %v; want %s", got, err, raw)
	}
}
