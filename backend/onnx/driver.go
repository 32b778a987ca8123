package onnx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
)

// Spec is the backend section of an onnx version:
//
//	{"type": "onnx", "path": "models/ranker/3", "timeout_ms": 20,
//	 "outputs": {"scores": "scores"},
//	 "batching": {"max_batch_size": 32, "batch_timeout_us": 200}}
type Spec struct {
	// Path is the model directory; Check makes it absolute.
	Path      string        `json:"path,omitempty"`
	TimeoutMS int           `json:"timeout_ms,omitempty"`
	Outputs   *Outputs      `json:"outputs,omitempty"`
	Batching  *BatchingSpec `json:"batching,omitempty"`

	// TLS never applies here: it is decoded only so that Check says why
	// rather than calling it an unknown field.
	TLS json.RawMessage `json:"tls,omitempty"`
}

// BatchingSpec is Batching as a version's backend section writes it.
type BatchingSpec struct {
	MaxBatchSize   int `json:"max_batch_size"`
	BatchTimeoutUS int `json:"batch_timeout_us"`
}

// Check requires a path, makes it absolute and bounds the batching.
func (s *Spec) Check() error {
	p, err := backend.LocalPath(Type, s.Path)
	if err != nil {
		return err
	}
	s.Path = p
	if bt := s.Batching; bt != nil && (bt.MaxBatchSize < 1 || bt.MaxBatchSize > 4096 || bt.BatchTimeoutUS < 0 || bt.BatchTimeoutUS > 1000000) {
		return fault.Field("backend.batching", "invalid_backend", "max_batch_size is 1..4096 and batch_timeout_us 0..1000000")
	}
	if len(s.TLS) > 0 && string(s.TLS) != "null" {
		return fault.Field("backend.tls", "invalid_backend", "applies to remote backends only")
	}
	return nil
}

// Timeout is TimeoutMS as a duration.
func (s *Spec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// Driver is the "onnx" backend: onnx/v1 models run in-process by ONNX
// Runtime. Safe for concurrent use.
type Driver struct {
	library        string
	intraOpThreads int
}

// NewDriver returns the driver that loads ONNX Runtime from library ("":
// LibraryPath's search) and runs models with intraOpThreads intra-op
// threads (0: the runtime's default).
func NewDriver(library string, intraOpThreads int) *Driver {
	return &Driver{library: library, intraOpThreads: intraOpThreads}
}

// Type is the backend type a model version names to be served by this
// driver ("type" in its backend config).
const Type = "onnx"

// Type returns Type.
func (*Driver) Type() string { return Type }

// NewConfig returns a new *Spec.
func (*Driver) NewConfig() backend.Config { return new(Spec) }

// SpanName is "onnx.predict".
func (*Driver) SpanName() string { return "onnx.predict" }

// Load loads the model directory and checks it against the feature spec
// and the outputs.
func (d *Driver) Load(_ context.Context, cfg backend.Config, opt backend.LoadOptions) (backend.Scorer, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	c := Config{Timeout: s.Timeout(), LibraryPath: d.library, IntraOpThreads: d.intraOpThreads}
	if s.Outputs != nil {
		c.Outputs = *s.Outputs
	}
	if b := s.Batching; b != nil {
		c.Batching = &Batching{MaxBatchSize: b.MaxBatchSize, BatchTimeout: time.Duration(b.BatchTimeoutUS) * time.Microsecond}
	}
	if opt.Plan != nil {
		c.Inputs = opt.Plan.Inputs()
	}
	m, err := Load(s.Path, c)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return nil, &fault.Error{Kind: fault.Invalid, Code: "invalid_model", Field: ve.Field, Message: ve.Msg}
		}
		return nil, fault.Field("backend.path", "invalid_model", "%v", err)
	}
	return m, nil
}

// ListVersions lists the version directories beside the registered one
// that hold a model.onnx.
func (*Driver) ListVersions(_ context.Context, cfg backend.Config, version string) ([]string, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	return backend.ListVersionDirs(s.Path, version, ModelFile)
}

// ConfigAt points a copy of cfg at the directory of version v.
func (*Driver) ConfigAt(cfg backend.Config, v string) (backend.Config, error) {
	s, err := spec(cfg)
	if err != nil {
		return nil, err
	}
	next := *s
	next.Path = backend.VersionDir(s.Path, v)
	return &next, nil
}

func spec(cfg backend.Config) (*Spec, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("onnx: config %T is not an onnx spec", cfg)
	}
	return s, nil
}
