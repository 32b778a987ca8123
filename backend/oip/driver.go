package oip

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/fault"
)

// Spec is the backend section of an oip version:
//
//	{"type": "oip", "target": "host:8001", "protocol": "grpc" | "http",
//	 "model_name": "ranker", "model_version": "3", "timeout_ms": 50,
//	 "outputs": {"scores": "scores"} | {"ids": "ids", "scores": "scores"},
//	 "tls": {"ca_file", "cert_file", "key_file", "server_name"}}
type Spec struct {
	Target string `json:"target,omitempty"`
	// Protocol is stored as registered; Check fills in "grpc".
	Protocol     string      `json:"protocol,omitempty"`
	ModelName    string      `json:"model_name,omitempty"`
	ModelVersion string      `json:"model_version,omitempty"`
	TimeoutMS    int         `json:"timeout_ms,omitempty"`
	Outputs      *Outputs    `json:"outputs,omitempty"`
	TLS          *remote.TLS `json:"tls,omitempty"`
}

// Check requires a target (host:port), a model name and the scores output,
// checks the protocol and fills in its default, grpc.
func (s *Spec) Check() error {
	switch {
	case s.Target == "":
		return fault.Field("backend.target", "missing_field", "an oip backend needs a target, e.g. \"triton:8001\" (gRPC) or \"triton:8000\" (HTTP)")
	case strings.HasPrefix(s.Target, "http://") || strings.HasPrefix(s.Target, "https://") ||
		(s.Protocol == ProtocolHTTP && strings.Contains(s.Target, "://")):
		// A gRPC target may name a resolver (dns:///triton:8001); a URL
		// scheme is never right.
		return fault.Field("backend.target", "invalid_backend", "give host:port without a scheme (%q): protocol and tls choose it", s.Target)
	case s.Protocol != "" && s.Protocol != ProtocolGRPC && s.Protocol != ProtocolHTTP:
		return fault.Field("backend.protocol", "invalid_backend", "must be %q or %q, not %q", ProtocolGRPC, ProtocolHTTP, s.Protocol)
	case s.ModelName == "":
		return fault.Field("backend.model_name", "missing_field", "an oip backend needs the model_name the server serves")
	case s.Outputs == nil || s.Outputs.Scores == "":
		return fault.Field("backend.outputs.scores", "missing_field", "map the model output holding the scores, e.g. {\"scores\": \"scores\"}")
	case s.Outputs.IDs == s.Outputs.Scores:
		return fault.Field("backend.outputs.ids", "invalid_backend", "must differ from outputs.scores (%q)", s.Outputs.Scores)
	}
	if err := s.TLS.Check(); err != nil {
		return err
	}
	if s.Protocol == "" {
		s.Protocol = ProtocolGRPC
	}
	return nil
}

// Timeout is TimeoutMS as a duration.
func (s *Spec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// config is the Config a version of s opens, with the feature spec's inputs.
func (s *Spec) config(opt backend.LoadOptions) Config {
	cfg := Config{Target: s.Target, Protocol: s.Protocol, ModelName: s.ModelName, ModelVersion: s.ModelVersion,
		Timeout: s.Timeout(), TLS: s.TLS}
	if s.Outputs != nil {
		cfg.Outputs = *s.Outputs
	}
	if opt.Plan != nil {
		cfg.Inputs = opt.Plan.Inputs()
	}
	return cfg
}

// Type is the backend type a model version names to be served by this
// driver ("type" in its backend config).
const Type = "oip"

// Driver is the "oip" backend. It holds no state: each version owns its
// connection. It does not implement backend.Lister, so an endpoint cannot
// watch an oip model with auto_arms.
type Driver struct{}

// Type returns Type.
func (Driver) Type() string { return Type }

// NewConfig returns a new *Spec.
func (Driver) NewConfig() backend.Config { return new(Spec) }

// SpanName is "oip.infer".
func (Driver) SpanName() string { return "oip.infer" }

// Load opens the version: checked against the server when opt.Validate
// (any mismatch, and an unreachable server, is a 400 invalid_model naming
// the field at fault), else unchecked (a server that is down makes the
// version unhealthy until it answers).
func (Driver) Load(ctx context.Context, cfg backend.Config, opt backend.LoadOptions) (backend.Scorer, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("oip: config %T is not an oip spec", cfg)
	}
	m, err := Open(ctx, s.config(opt), opt.Validate)
	if err != nil {
		if fault.As(err) != nil {
			return nil, err
		}
		return nil, &fault.Error{Kind: fault.Invalid, Code: "invalid_model", Field: "backend", Message: "oip backend", Err: err}
	}
	return m, nil
}
