// Package tfserving scores requests with a model served by TensorFlow Serving
// over gRPC (tensorflow.serving.PredictionService/Predict), wire-compatible
// with TF Serving 2.x.
//
// A Pool holds one long-lived connection per target (and TLS settings),
// shared by every Model that points at it. Pool.Open checks a version against
// the server when it is registered (GetModelStatus, then the signature from
// GetModelMetadata against the feature spec's inputs and the mapped
// outputs), or, at start-up, opens it unchecked: an unreachable server never
// stops the gateway from starting, its models are just unhealthy until a
// health poll succeeds.
//
// # Wire format
//
// Each input tensor carries dtype, tensor_shape (the featurizer's shape, batch
// dimension 1 first) and its values:
//
//   - float32, float64, int32, int64: tensor_content, the elements' raw
//     little-endian bytes in row-major order, as TensorFlow's own
//     Tensor::AsProtoTensorContent writes them and Tensor::FromProto reads
//     them (TF Serving runs on little-endian hosts). It is the most compact
//     encoding (int64 ids as varints would take up to 10 bytes each) and the
//     cheapest to produce;
//   - string: string_val, one entry per element (tensor_content for strings is
//     TensorFlow's internal varint-prefixed list, which clients do not send);
//   - bool: bool_val (one byte per element on the wire, as tensor_content
//     would be).
//
// Predict writes these straight into the request's wire bytes, after the
// model spec and output filter, which are encoded once per model.
//
// Outputs are read from either tensor_content or the dtype's typed field
// (float_val, double_val, string_val), as TensorFlow would decode them: a
// typed field shorter than the shape is filled with its last value. Predict
// reads the mapped outputs straight from the response's wire bytes, checked
// as protobuf would check them, and skips the rest.
package tfserving

import (
	"fmt"
	"strings"
	"time"

	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/featurizer"
)

// Defaults of the zero Config fields.
const (
	// DefaultSignature is the signature used when Config.SignatureName is "".
	DefaultSignature = "serving_default"
	// DefaultTimeout is the deadline of each Predict when Config.Timeout is 0.
	DefaultTimeout = time.Second
	// DefaultHealthInterval is the health poll period when
	// Config.HealthInterval is 0.
	DefaultHealthInterval = 2 * time.Second
	// ValidateTimeout is the deadline of each call Open makes to validate a
	// version.
	ValidateTimeout = 5 * time.Second
)

// Outputs maps the roles the gateway reads to the signature's output
// aliases. Scores is required. With IDs "" the scores output is aligned with
// the request's candidates (one score per candidate); with IDs set the model
// ranks items itself and returns their ids (a DT_STRING tensor) and scores.
type Outputs struct {
	Scores string `json:"scores"`
	IDs    string `json:"ids,omitempty"`
}

// TLS configures TLS towards TF Serving (see remote.TLS).
type TLS = remote.TLS

// Config describes one model version served by TF Serving. Zero values of
// the optional fields take the defaults documented on each field.
type Config struct {
	// Target is TF Serving's gRPC address, "host:port" (or any gRPC target).
	Target string
	// ModelName is the model's name in TF Serving.
	ModelName string
	// Version pins the version; 0 means none (VersionLabel, or else the
	// latest version TF Serving serves).
	Version int64
	// VersionLabel routes to the version the label names (TF Serving's
	// version_labels). At most one of Version and VersionLabel is set.
	VersionLabel string
	// SignatureName is the signature called; "" means "serving_default".
	SignatureName string
	// Timeout is the deadline of each Predict call; 0 means 1s. The caller's
	// context deadline applies too, whichever is earlier.
	Timeout time.Duration
	// Outputs maps roles to output aliases.
	Outputs Outputs
	// TLS, when non-nil, secures the connection; nil means plaintext.
	TLS *TLS
	// Inputs are the tensors the version's feature spec produces
	// (featurizer.Plan.Inputs); Open checks them against the signature when
	// it validates.
	Inputs []featurizer.InputInfo
	// HealthInterval is the period of the health poll; 0 means 2s.
	HealthInterval time.Duration
}

// ValidationError is a configuration the server does not match, or cannot
// confirm: Field names the part of the model version body at fault (e.g.
// "backend.target", "backend.version", "backend.outputs.scores",
// "features.inputs.age") and Msg says why.
type ValidationError struct {
	Field string
	Msg   string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// check validates the configuration by itself, before any call, and returns
// it with defaults filled in.
func (c Config) check() (Config, error) {
	switch {
	case strings.TrimSpace(c.Target) == "":
		return c, invalid("backend.target", "required (TF Serving's gRPC address, host:port)")
	case c.ModelName == "":
		return c, invalid("backend.model_name", "required (the model's name in TF Serving)")
	case c.Version < 0:
		return c, invalid("backend.version", "must be positive, got %d", c.Version)
	case c.Version > 0 && c.VersionLabel != "":
		return c, invalid("backend.version_label", "give version or version_label, not both")
	case c.Timeout < 0:
		return c, invalid("backend.timeout_ms", "must not be negative")
	case c.HealthInterval < 0:
		return c, invalid("backend.health_interval", "must not be negative")
	case c.Outputs.Scores == "":
		return c, invalid("backend.outputs.scores", "required (the signature's output alias holding the scores)")
	case c.Outputs.IDs == c.Outputs.Scores:
		return c, invalid("backend.outputs.ids", "must differ from outputs.scores (%q)", c.Outputs.Scores)
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return c, invalid("backend.tls.cert_file", "required with key_file")
		}
		return c, invalid("backend.tls.key_file", "required with cert_file")
	}
	if c.SignatureName == "" {
		c.SignatureName = DefaultSignature
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.TLS != nil {
		t := *c.TLS
		c.TLS = &t
	}
	c.Inputs = append([]featurizer.InputInfo(nil), c.Inputs...)
	return c, nil
}
