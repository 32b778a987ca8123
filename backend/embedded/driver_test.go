package embedded_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/fault"
)

// The errors a user sees for an embedded backend section.
func TestSpecErrors(t *testing.T) {
	drivers := backend.NewDrivers(embedded.Driver{})
	for _, tc := range []struct {
		name, raw, code, field, msg string
	}{
		{"no path", `{"type": "embedded"}`, "missing_field", "backend.path", "an embedded backend needs a path"},
		{"batching", `{"type": "embedded", "path": "/m", "batching": {"max_batch_size": 4}}`, "invalid_backend", "backend.batching", "applies to onnx backends only"},
		{"tls", `{"type": "embedded", "path": "/m", "tls": {"ca_file": "/ca.pem"}}`, "invalid_backend", "backend.tls", "applies to remote backends only"},
		{"timeout", `{"type": "embedded", "path": "/m", "timeout_ms": -1}`, "invalid_backend", "backend.timeout_ms", "must be in 0..60000"},
		{"wrong case", `{"type": "embedded", "Path": "/m"}`, "unknown_field", "backend.Path", `did you mean "path"?`},
		{"another backend's field", `{"type": "embedded", "path": "/m", "model_name": "x"}`, "unknown_field", "backend.model_name", "unknown field"},
		{"path not a string", `{"type": "embedded", "path": 3}`, "invalid_type", "backend.path", "expected a string, got JSON number 3"},
		{"type not a string", `{"type": 3, "path": "/m"}`, "invalid_type", "backend.type", "expected a string"},
		{"type miscased", `{"Type": "embedded", "path": "/m"}`, "unknown_field", "backend.Type", `did you mean "type"?`},
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

func TestSpecAbsolutePath(t *testing.T) {
	typ, cfg, err := backend.NewDrivers(embedded.Driver{}).Parse([]byte(`{"type": "embedded", "path": "models/mf/1", "timeout_ms": 20}`))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs("models/mf/1")
	if s := cfg.(*embedded.Spec); typ != "embedded" || s.Path != want || cfg.Timeout().Milliseconds() != 20 {
		t.Fatalf("Parse = %s %+v, want the path made absolute (%s) and 20ms", typ, s, want)
	}
	got, err := backend.EncodeConfig(typ, cfg)
	if err != nil || string(got) != `{"type":"embedded","path":"`+want+`","timeout_ms":20}` {
		t.Fatalf("EncodeConfig = %s, %v", got, err)
	}
}
