package tfserving

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// Model is one model version served by TF Serving, made by Pool.Open (the
// zero value is not usable). It is safe for concurrent use. Its health is
// polled in the background from Open until Close.
type Model struct {
	cfg       Config
	cc        grpc.ClientConnInterface
	pred      apis.PredictionServiceClient
	models    apis.ModelServiceClient
	codec     *predictCodec   // Predict's
	withCodec grpc.CallOption // forces codec on a call
	health    remote.Health

	release   func()
	closeOnce sync.Once
}

// Open returns a Model for cfg over the pool's connection to cfg.Target.
//
// With validate (registering a version), Open checks the server before
// returning: GetModelStatus must report the version AVAILABLE (with a
// version label, or no version, some version AVAILABLE, and GetModelMetadata
// with the label must succeed), and the signature from GetModelMetadata must
// have every input of cfg.Inputs with a compatible dtype and shape, and the
// outputs cfg.Outputs maps. Each call has a deadline of ValidateTimeout (and
// ctx's). Any mismatch, and an unreachable server, is a *ValidationError
// naming the field at fault; the Model starts healthy.
//
// Without validate (start-up), Open checks only cfg itself and never fails
// because the server is unreachable or does not serve the version: the Model
// starts unhealthy and becomes healthy when a health poll succeeds.
//
// Errors in cfg itself are *ValidationErrors in both cases.
func (p *Pool) Open(ctx context.Context, cfg Config, validate bool) (*Model, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	cc, release, err := p.acquire(cfg.Target, cfg.TLS)
	if err != nil {
		return nil, err
	}
	m := newModel(cfg, cc, release)
	if validate {
		if err := m.validate(ctx); err != nil {
			release()
			return nil, err
		}
		m.health.Set(nil)
	}
	m.health.Start(cfg.HealthInterval, ValidateTimeout, !validate, m.checkStatus)
	return m, nil
}

func newModel(cfg Config, cc grpc.ClientConnInterface, release func()) *Model {
	m := &Model{
		cfg:     cfg,
		cc:      cc,
		pred:    apis.NewPredictionServiceClient(cc),
		models:  apis.NewModelServiceClient(cc),
		release: release,
	}
	filter := []string{cfg.Outputs.Scores}
	if cfg.Outputs.IDs != "" {
		filter = append(filter, cfg.Outputs.IDs)
	}
	m.codec = newPredictCodec(newRequestEncoder(m.modelSpec(true), filter), newResponseDecoder(cfg.Outputs.Scores, cfg.Outputs.IDs))
	m.withCodec = grpc.ForceCodecV2(m.codec)
	return m
}

// modelSpec is the ModelSpec of this version: name, version or version
// label, and, when withSignature, the signature name.
func (m *Model) modelSpec(withSignature bool) *apis.ModelSpec {
	s := &apis.ModelSpec{Name: m.cfg.ModelName}
	switch {
	case m.cfg.Version > 0:
		s.VersionChoice = &apis.ModelSpec_Version{Version: wrapperspb.Int64(m.cfg.Version)}
	case m.cfg.VersionLabel != "":
		s.VersionChoice = &apis.ModelSpec_VersionLabel{VersionLabel: m.cfg.VersionLabel}
	}
	if withSignature {
		s.SignatureName = m.cfg.SignatureName
	}
	return s
}

// Healthy reports whether the last health poll found the version AVAILABLE
// (after a successful validation, until the first poll says otherwise). A
// Predict that finds the server unavailable marks the model unhealthy at
// once; the next successful poll restores it. It is cheap (one atomic load).
func (m *Model) Healthy() bool { return m.health.Healthy() }

// HealthError is why the model is unhealthy, nil when it is healthy.
func (m *Model) HealthError() error { return m.health.Err() }

// Close stops the health poll and releases the model's share of the
// connection. Calls in flight may fail. It is safe to call more than once.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		m.health.Stop()
		m.release()
	})
	return nil
}

// checkStatus asks GetModelStatus whether the version (or, without a
// version, some version) is AVAILABLE. With a version label it also asks
// GetModelMetadata with the label, as GetModelStatus does not resolve labels:
// the labelled version may be gone while others are AVAILABLE.
func (m *Model) checkStatus(ctx context.Context) error {
	budget := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	resp, err := m.models.GetModelStatus(ctx, &apis.GetModelStatusRequest{ModelSpec: m.statusSpec()})
	if err != nil {
		return callError(ctx, "GetModelStatus", budget, err)
	}
	if _, err := m.availableIn(resp); err != nil {
		return fmt.Errorf("tfserving GetModelStatus: %w", err)
	}
	if m.cfg.VersionLabel != "" {
		_, err := m.pred.GetModelMetadata(ctx, &apis.GetModelMetadataRequest{
			ModelSpec:     m.modelSpec(false),
			MetadataField: []string{metadataSignatureDef},
		})
		if err != nil {
			return callError(ctx, "GetModelMetadata", budget, err)
		}
	}
	return nil
}

// statusSpec is the ModelSpec for GetModelStatus: name and version only, as
// TF Serving reports every version of the model when no version is given
// and does not resolve labels there.
func (m *Model) statusSpec() *apis.ModelSpec {
	s := &apis.ModelSpec{Name: m.cfg.ModelName}
	if m.cfg.Version > 0 {
		s.VersionChoice = &apis.ModelSpec_Version{Version: wrapperspb.Int64(m.cfg.Version)}
	}
	return s
}

// availableIn finds the version in a GetModelStatus response and returns its
// status, or an error saying why it is not AVAILABLE. Without a pinned
// version, any AVAILABLE version will do.
func (m *Model) availableIn(resp *apis.GetModelStatusResponse) (*apis.ModelVersionStatus, error) {
	vs := resp.GetModelVersionStatus()
	if m.cfg.Version > 0 {
		for _, s := range vs {
			if s.GetVersion() != m.cfg.Version {
				continue
			}
			if s.GetState() != apis.ModelVersionStatus_AVAILABLE {
				return s, fmt.Errorf("version %d is not AVAILABLE (state %s%s)", m.cfg.Version, s.GetState(), statusDetail(s))
			}
			return s, nil
		}
		return nil, fmt.Errorf("version %d of model %q is not served (%s)", m.cfg.Version, m.cfg.ModelName, describeVersions(vs))
	}
	for _, s := range vs {
		if s.GetState() == apis.ModelVersionStatus_AVAILABLE {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no version of model %q is AVAILABLE (%s)", m.cfg.ModelName, describeVersions(vs))
}

func statusDetail(s *apis.ModelVersionStatus) string {
	if msg := s.GetStatus().GetErrorMessage(); msg != "" {
		return ": " + msg
	}
	return ""
}

// describeVersions lists versions and states, e.g. "versions: 6 AVAILABLE,
// 7 LOADING".
func describeVersions(vs []*apis.ModelVersionStatus) string {
	if len(vs) == 0 {
		return "no versions reported"
	}
	b := []byte("versions:")
	for i, s := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, " %d %s", s.GetVersion(), s.GetState())
	}
	return string(b)
}
