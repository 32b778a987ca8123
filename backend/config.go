package backend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/modelgate/modelgate/fault"
)

// MaxTimeout is the longest timeout_ms a backend section may set.
const MaxTimeout = time.Minute

// Parse decodes and validates the backend section of a registration body:
// raw is the JSON object (its syntax and repeated keys already checked with
// the rest of the body). The driver its "type" names decodes the other
// members strictly (an unknown field is an error), then the timeout and the
// driver's Check validate them. Every error is a *fault.Error naming its
// field under "backend"; a type without a driver is unsupported_backend,
// naming the types there are.
func (s *Drivers) Parse(raw []byte) (typ string, cfg Config, err error) {
	typ, rest, err := splitType(raw)
	if err != nil {
		return "", nil, err
	}
	d, ok := s.Lookup(typ)
	if !ok {
		return typ, nil, s.Unsupported(typ)
	}
	cfg = d.NewConfig()
	if err := fault.DecodeJSON(rest, cfg); err != nil {
		return typ, nil, underBackend(err)
	}
	if t := cfg.Timeout(); t < 0 || t > MaxTimeout {
		return typ, nil, fault.Field("backend.timeout_ms", "invalid_backend", "must be in 0..%d", MaxTimeout.Milliseconds())
	}
	if err := cfg.Check(); err != nil {
		return typ, nil, err
	}
	return typ, cfg, nil
}

// Decode decodes a stored backend section of type typ, which Parse accepted
// when it was registered. It is lenient, as stored records are read: names
// match without regard to case, members the driver does not know are
// skipped, and nothing is checked again, so a record an older release
// stored still loads. A type without a driver is unsupported_backend.
func (s *Drivers) Decode(typ string, raw []byte) (Config, error) {
	d, ok := s.Lookup(typ)
	if !ok {
		return nil, s.Unsupported(typ)
	}
	cfg := d.NewConfig()
	if err := json.Unmarshal(raw, cfg); err != nil {
		return nil, fmt.Errorf("decode %s backend: %w", typ, err)
	}
	return cfg, nil
}

// Unsupported is the error for a backend type without a driver.
func (s *Drivers) Unsupported(typ string) error {
	return fault.Field("backend.type", "unsupported_backend", "%q is not available (have: %v)", typ, s.Types())
}

// EncodeConfig encodes cfg as the backend section of type typ: "type"
// first, then cfg's own members.
func EncodeConfig(typ string, cfg Config) ([]byte, error) {
	t, err := json.Marshal(typ)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode %s backend: %w", typ, err)
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("encode %s backend: its config is not a JSON object", typ)
	}
	out := make([]byte, 0, len(t)+len(body)+9)
	out = append(out, `{"type":`...)
	out = append(out, t...)
	if inner := bytes.TrimSpace(body[1 : len(body)-1]); len(inner) > 0 {
		out = append(out, ',')
		out = append(out, inner...)
	}
	return append(out, '}'), nil
}

// splitType returns the "type" of a backend section and the section
// without it, which a driver's config (that has no "type") decodes
// strictly. A "type" that is not a string is refused as the whole body's
// decoding would refuse it.
func splitType(raw []byte) (string, []byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	var out bytes.Buffer
	enc := jsontext.NewEncoder(&out)
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return "", nil, fault.Field("backend", "invalid_type", "expected an object")
	}
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return "", nil, err
	}
	typ := ""
	var miscased []byte // {"Type": …}, when the section has such a member
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return "", nil, fault.New(fault.Invalid, "invalid_json", "malformed JSON in backend: %v", err)
		}
		name := tok.String() // before the next read voids tok
		val, err := dec.ReadValue()
		if err != nil {
			return "", nil, fault.New(fault.Invalid, "invalid_json", "malformed JSON in backend: %v", err)
		}
		if name != "type" {
			if miscased == nil && strings.EqualFold(name, "type") {
				// A driver's config has no "type" to suggest; the
				// section's has.
				miscased, _ = jsontext.AppendQuote(nil, name)
				miscased = append(append(append(miscased, ':'), val...), '}')
				miscased = append([]byte{'{'}, miscased...)
			}
			if err := enc.WriteToken(jsontext.String(name)); err != nil {
				return "", nil, err
			}
			if err := enc.WriteValue(val); err != nil {
				return "", nil, err
			}
			continue
		}
		if val.Kind() == 'n' {
			continue // null leaves the type unset, as for any string field
		}
		var head struct {
			Type string `json:"type"`
		}
		single := append(append([]byte(`{"type":`), val...), '}')
		if err := fault.DecodeJSON(single, &head); err != nil {
			return "", nil, underBackend(err)
		}
		typ = head.Type
	}
	if miscased != nil {
		var head struct {
			Type string `json:"type"`
		}
		if err := fault.DecodeJSON(miscased, &head); err != nil {
			return "", nil, underBackend(err)
		}
	}
	if err := enc.WriteToken(jsontext.EndObject); err != nil {
		return "", nil, err
	}
	return typ, out.Bytes(), nil
}

// LocalPath checks the path of a backend whose model files are on this
// machine: it is required, and made absolute with the process's working
// directory as the base, so a later change of directory cannot move it.
// typ, the backend's type, names the backend in the missing_field message.
func LocalPath(typ, path string) (string, error) {
	if path == "" {
		return "", fault.Field("backend.path", "missing_field", "an %s backend needs a path", typ)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fault.Field("backend.path", "invalid_model", "%v", err)
	}
	return abs, nil
}

// underBackend puts the field of a decoding error of the backend section
// under "backend", where it is in the body.
func underBackend(err error) error {
	f := fault.As(err)
	if f == nil {
		return err
	}
	g := *f
	if g.Field == "" {
		g.Field = "backend"
	} else {
		g.Field = "backend." + g.Field
	}
	return &g
}
