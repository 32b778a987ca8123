package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
)

// DefaultSpec is the feature spec of a version registered without one: it
// reads user_id and features.recent_items, the inputs Predict knows.
const DefaultSpec = `{"inputs": {
  "user_id": {"from": "user_id", "dtype": "string"},
  "recent_items": {"from": "features.recent_items", "transform": "list", "dtype": "string", "default": []}}}`

// Spec is the backend section of an embedded version:
//
//	{"type": "embedded", "path": "models/mf/2", "timeout_ms": 20}
type Spec struct {
	// Path is the model directory; Check makes it absolute.
	Path string `json:"path,omitempty"`
	// TimeoutMS is the deadline of one Predict in milliseconds; 0 leaves
	// the gateway's default.
	TimeoutMS int `json:"timeout_ms,omitempty"`

	// TLS and Batching are never valid here: they are decoded only so
	// that Check says why they do not apply rather than calling them
	// unknown fields.
	TLS      json.RawMessage `json:"tls,omitempty"`
	Batching json.RawMessage `json:"batching,omitempty"`
}

// Check requires a path and makes it absolute (the process's working
// directory is the base).
func (s *Spec) Check() error {
	p, err := backend.LocalPath(Type, s.Path)
	if err != nil {
		return err
	}
	s.Path = p
	if given(s.Batching) {
		return fault.Field("backend.batching", "invalid_backend", "applies to onnx backends only")
	}
	if given(s.TLS) {
		return fault.Field("backend.tls", "invalid_backend", "applies to remote backends only")
	}
	return nil
}

// Timeout is TimeoutMS as a duration.
func (s *Spec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// Driver is the "embedded" backend: embedding/v1 models loaded in-process.
// The zero value is ready to use and safe for concurrent use.
type Driver struct{}

// Type is the backend type a model version names to be served by this
// driver ("type" in its backend config).
const Type = "embedded"

// Type returns Type.
func (Driver) Type() string { return Type }

// NewConfig returns a new *Spec.
func (Driver) NewConfig() backend.Config { return new(Spec) }

// SpanName is "embedded.predict".
func (Driver) SpanName() string { return "embedded.predict" }

// DefaultSpec returns DefaultSpec.
func (Driver) DefaultSpec() []byte { return []byte(DefaultSpec) }

// Load checks that the feature spec feeds user_id and recent_items as
// Predict reads them, then loads the model directory.
func (Driver) Load(_ context.Context, cfg backend.Config, opt backend.LoadOptions) (backend.Scorer, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkInputs(opt.Plan); err != nil {
		return nil, err
	}
	m, err := Load(s.Path)
	if err != nil {
		return nil, fault.Field("backend.path", "invalid_model", "%v", err)
	}
	return m, nil
}

// ListVersions lists the version directories beside the registered one
// that hold a model.json.
func (Driver) ListVersions(_ context.Context, cfg backend.Config, version string) ([]string, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	return backend.ListVersionDirs(s.Path, version, ModelFile)
}

// ConfigAt points a copy of cfg at the directory of version v.
func (Driver) ConfigAt(cfg backend.Config, v string) (backend.Config, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	next := *s
	next.Path = backend.VersionDir(s.Path, v)
	return &next, nil
}

// given reports whether a member was set to something other than null.
func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

func spec(cfg backend.Config) (*Spec, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("embedded: config %T is not an embedded spec", cfg)
	}
	return s, nil
}

// checkInputs refuses a feature spec whose user_id or recent_items inputs
// an embedding/v1 model could not read.
func checkInputs(plan *featurizer.Plan) error {
	if plan == nil {
		return nil
	}
	for _, in := range plan.Inputs() {
		switch in.Name {
		case InputUserID:
			if in.DType != featurizer.String || in.Rank != 1 {
				return fault.Field("features.inputs."+in.Name, "invalid_feature_spec",
					"an embedded model reads user_id as a single string (dtype string, no list)")
			}
		case InputRecentItems:
			if in.DType != featurizer.String || in.Rank == 1 {
				return fault.Field("features.inputs."+in.Name, "invalid_feature_spec",
					"an embedded model reads recent_items as a list of strings (dtype string, transform list)")
			}
		}
	}
	return nil
}
