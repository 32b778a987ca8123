// Package oip scores requests with a model served over the Open Inference
// Protocol v2 ("KServe v2"): Triton Inference Server, KServe, MLServer,
// Seldon Core 2. It speaks gRPC (inference.GRPCInferenceService: ModelInfer,
// ModelMetadata, ModelReady, ServerLive) or HTTP/REST (POST
// /v2/models/{name}[/versions/{v}]/infer, GET /v2/models/{name}[/versions/{v}]
// and …/ready, GET /v2/health/live).
//
// Each version owns its connection: a gRPC client connection, or an HTTP
// client with its own pool of keep-alive connections, made when the version
// is loaded and closed with it.
//
// # Requests
//
// Each input the feature spec builds is one named input tensor, with the
// datatype of its dtype (string BYTES, float32 FP32, float64 FP64, int32
// INT32, int64 INT64, bool BOOL) and the shape of the built tensor ([1] or
// [1, L]). The request names the mapped outputs, so the server returns only
// those.
//
// Over gRPC the elements are sent typed, in each input's contents
// (bytes_contents, fp32_contents, …), never in raw_input_contents: every
// server of the protocol reads typed contents, and for the gateway's tensors
// they are no larger than the raw form (a BYTES element costs one or two
// bytes of framing instead of raw's four-byte length, floats are packed
// either way). Over HTTP they are the JSON "data" arrays (BYTES as strings).
//
// # Responses
//
// Over gRPC an output's elements are read from its contents or, when the
// response has raw_output_contents (Triton's choice), from the raw entry of
// the same index: row-major, little-endian, a BYTES element as a four-byte
// little-endian length followed by its bytes. Over HTTP they are read from
// the output's "data", flat or nested in the shape's rows. The scores output
// is FP32 or FP64, the ids output BYTES, each of shape [N] or [1, N].
package oip

import (
	"cmp"
	"slices"
	"time"

	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/featurizer"
)

// The protocols a version may name.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Defaults of the zero Config fields, and the bounds of a call.
const (
	// DefaultTimeout is the deadline of each inference call when
	// Config.Timeout is 0.
	DefaultTimeout = time.Second
	// DefaultHealthInterval is the period of the ModelReady poll when
	// Config.HealthInterval is 0.
	DefaultHealthInterval = 2 * time.Second
	// ValidateTimeout is the deadline of each call Open makes to validate a
	// version.
	ValidateTimeout = 5 * time.Second
	// MaxResponseBytes bounds a response: one gRPC message, or one HTTP
	// body.
	MaxResponseBytes = remote.MaxMsgSize
)

// Outputs maps the roles the gateway reads to the model's output names.
// Scores is required. With IDs "" the scores output is aligned with the
// request's candidates (one score per candidate); with IDs set the model
// ranks items itself and returns their ids (a BYTES tensor) and scores.
type Outputs struct {
	Scores string `json:"scores"`
	IDs    string `json:"ids,omitempty"`
}

// Config describes one model version served over the protocol. Zero values
// of the optional fields take the defaults documented on each field.
type Config struct {
	// Target is the server's address, host:port (Triton: 8001 for gRPC,
	// 8000 for HTTP).
	Target string
	// Protocol is ProtocolGRPC or ProtocolHTTP; "" means gRPC.
	Protocol string
	// ModelName is the model's name on the server.
	ModelName string
	// ModelVersion pins the version; "" lets the server choose.
	ModelVersion string
	// Timeout is the deadline of each inference call; 0 means 1s. The
	// caller's context deadline applies too, whichever is earlier.
	Timeout time.Duration
	// Outputs maps roles to output names.
	Outputs Outputs
	// TLS, when non-nil, secures the connection (https over HTTP); nil
	// means plaintext.
	TLS *remote.TLS
	// Inputs are the tensors the version's feature spec produces
	// (featurizer.Plan.Inputs); Open checks them against ModelMetadata when
	// it validates.
	Inputs []featurizer.InputInfo
	// HealthInterval is the period of the ModelReady poll; 0 means 2s.
	HealthInterval time.Duration
}

// withDefaults returns c with its zero optional fields filled in.
func (c Config) withDefaults() Config {
	c.Protocol = cmp.Or(c.Protocol, ProtocolGRPC)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.HealthInterval = cmp.Or(c.HealthInterval, DefaultHealthInterval)
	if c.TLS != nil { // the caller's may change
		c.TLS = new(*c.TLS)
	}
	c.Inputs = slices.Clone(c.Inputs)
	return c
}
