package tfserving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
)

// Spec is the backend section of a tfserving version:
//
//	{"type": "tfserving", "target": "host:8500", "model_name": "ranker",
//	 "version": 7 | "version_label": "canary", "signature_name": "serving_default",
//	 "timeout_ms": 50, "outputs": {"scores": "scores"}, "tls": {…}}
type Spec struct {
	Target    string `json:"target,omitempty"`
	ModelName string `json:"model_name,omitempty"`
	// Version pins a version; nil means none (VersionLabel, or the latest).
	Version      *int64 `json:"version,omitempty"`
	VersionLabel string `json:"version_label,omitempty"`
	// SignatureName is stored as registered; Check fills in
	// DefaultSignature.
	SignatureName string   `json:"signature_name,omitempty"`
	TimeoutMS     int      `json:"timeout_ms,omitempty"`
	Outputs       *Outputs `json:"outputs,omitempty"`
	TLS           *TLS     `json:"tls,omitempty"`

	// Batching never applies here: it is decoded only so that Check says
	// why rather than calling it an unknown field.
	Batching json.RawMessage `json:"batching,omitempty"`
}

// Check requires a target, a model name and the scores output, and fills in
// the default signature.
func (s *Spec) Check() error {
	switch {
	case s.Target == "":
		return fault.Field("backend.target", "missing_field", "a tfserving backend needs a target, e.g. \"tfserving:8500\"")
	case s.ModelName == "":
		return fault.Field("backend.model_name", "missing_field", "a tfserving backend needs the model_name TF Serving serves")
	case s.Version != nil && s.VersionLabel != "":
		return fault.Field("backend.version_label", "invalid_backend", "give version or version_label, not both")
	case s.Version != nil && *s.Version < 0:
		return fault.Field("backend.version", "invalid_backend", "must be ≥ 0")
	case s.Outputs == nil || s.Outputs.Scores == "":
		return fault.Field("backend.outputs.scores", "missing_field", "map the signature output holding the scores, e.g. {\"scores\": \"scores\"}")
	}
	if s.SignatureName == "" {
		s.SignatureName = DefaultSignature
	}
	if len(s.Batching) > 0 && string(s.Batching) != "null" {
		return fault.Field("backend.batching", "invalid_backend", "applies to onnx backends only")
	}
	return nil
}

// Timeout is TimeoutMS as a duration.
func (s *Spec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// config is the Config a version of s opens, with the feature spec's inputs.
func (s *Spec) config(opt backend.LoadOptions) Config {
	cfg := Config{Target: s.Target, ModelName: s.ModelName, VersionLabel: s.VersionLabel,
		SignatureName: s.SignatureName, Timeout: s.Timeout(), TLS: s.TLS}
	if s.Version != nil {
		cfg.Version = *s.Version
	}
	if s.Outputs != nil {
		cfg.Outputs = *s.Outputs
	}
	if opt.Plan != nil {
		cfg.Inputs = opt.Plan.Inputs()
	}
	return cfg
}

// Driver is the "tfserving" backend: models served by TF Serving, over the
// connections of one Pool. Safe for concurrent use.
type Driver struct {
	pool *Pool
}

// NewDriver returns the driver whose versions share pool's connections.
// The caller owns pool and closes it after the last version is closed.
func NewDriver(pool *Pool) *Driver { return &Driver{pool: pool} }

// Type is the backend type a model version names to be served by this
// driver ("type" in its backend config).
const Type = "tfserving"

// Type returns Type.
func (*Driver) Type() string { return Type }

// NewConfig returns a new *Spec.
func (*Driver) NewConfig() backend.Config { return new(Spec) }

// SpanName is "tfserving.predict".
func (*Driver) SpanName() string { return "tfserving.predict" }

// Load opens the version in the pool: checked against the server when
// opt.Validate, else unchecked (a server that is down makes the version
// unhealthy until it answers).
func (d *Driver) Load(ctx context.Context, cfg backend.Config, opt backend.LoadOptions) (backend.Scorer, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	m, err := d.pool.Open(ctx, s.config(opt), opt.Validate)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			field := ve.Field
			if field == "" {
				field = "backend"
			}
			return nil, &fault.Error{Kind: fault.Invalid, Code: "invalid_model", Field: field, Message: ve.Msg}
		}
		return nil, &fault.Error{Kind: fault.Invalid, Code: "invalid_model", Field: "backend", Message: "TF Serving backend", Err: err}
	}
	return m, nil
}

// ListVersions lists the versions of the model TF Serving has AVAILABLE.
func (d *Driver) ListVersions(ctx context.Context, cfg backend.Config, _ string) ([]string, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	vs, err := d.pool.AvailableVersions(ctx, s.Target, s.ModelName, s.TLS)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strconv.FormatInt(v, 10)
	}
	return out, nil
}

// ConfigAt pins a copy of cfg to TF Serving version v (a number), without
// version_label.
func (*Driver) ConfigAt(cfg backend.Config, v string) (backend.Config, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("version %q is not a TF Serving version number", v)
	}
	next := *s
	next.Version, next.VersionLabel = &n, ""
	return &next, nil
}

func spec(cfg backend.Config) (*Spec, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("tfserving: config %T is not a tfserving spec", cfg)
	}
	return s, nil
}
