package gateway

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/lifecycle"
	"github.com/modelgate/modelgate/registry"
)

// loaders are the backend types this binary serves.
func loaders(pool *tfserving.Pool, ort config.ONNXRuntime) map[string]registry.Loader {
	return map[string]registry.Loader{
		"embedded": loadEmbedded,
		"onnx": func(ctx context.Context, mv *registry.ModelVersion, opt registry.LoadOptions) (registry.Scorer, error) {
			return loadONNX(ctx, ort, mv, opt)
		},
		"tfserving": func(ctx context.Context, mv *registry.ModelVersion, opt registry.LoadOptions) (registry.Scorer, error) {
			return loadTFServing(ctx, pool, mv, opt)
		},
	}
}

// listers tell the auto_arms watcher which versions a backend publishes.
func listers(pool *tfserving.Pool) map[string]lifecycle.Lister {
	return map[string]lifecycle.Lister{
		"tfserving": func(ctx context.Context, tmpl *registry.ModelVersion) ([]string, error) {
			vs, err := pool.AvailableVersions(ctx, tmpl.Backend.Target, tmpl.Backend.ModelName, tfTLS(tmpl.Backend.TLS))
			if err != nil {
				return nil, err
			}
			out := make([]string, len(vs))
			for i, v := range vs {
				out[i] = strconv.FormatInt(v, 10)
			}
			return out, nil
		},
	}
}

func tfTLS(t *registry.BackendTLS) *tfserving.TLS {
	if t == nil {
		return nil
	}
	return &tfserving.TLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}
}

func loadTFServing(ctx context.Context, pool *tfserving.Pool, mv *registry.ModelVersion, opt registry.LoadOptions) (registry.Scorer, error) {
	b := mv.Backend
	cfg := tfserving.Config{Target: b.Target, ModelName: b.ModelName, VersionLabel: b.VersionLabel,
		SignatureName: b.SignatureName, Timeout: time.Duration(b.TimeoutMS) * time.Millisecond, TLS: tfTLS(b.TLS)}
	if b.Version != nil {
		cfg.Version = *b.Version
	}
	if b.Outputs != nil {
		cfg.Outputs = tfserving.Outputs{Scores: b.Outputs.Scores, IDs: b.Outputs.IDs}
	}
	if opt.Plan != nil {
		cfg.Inputs = opt.Plan.Inputs()
	}
	m, err := pool.Open(ctx, cfg, opt.Validate)
	if err != nil {
		var ve *tfserving.ValidationError
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

func loadEmbedded(_ context.Context, mv *registry.ModelVersion, opt registry.LoadOptions) (registry.Scorer, error) {
	if err := checkEmbeddedInputs(opt.Plan); err != nil {
		return nil, err
	}
	m, err := embedded.Load(mv.Backend.Path)
	if err != nil {
		return nil, fault.Field("backend.path", "invalid_model", "%v", err)
	}
	return m, nil
}

// checkEmbeddedInputs refuses a feature spec whose user_id or recent_items
// inputs an embedding/v1 model could not read.
func checkEmbeddedInputs(plan *featurizer.Plan) error {
	if plan == nil {
		return nil
	}
	for _, in := range plan.Inputs() {
		switch in.Name {
		case embedded.InputUserID:
			if in.DType != featurizer.String || in.Rank != 1 {
				return fault.Field("features.inputs."+in.Name, "invalid_feature_spec",
					"an embedded model reads user_id as a single string (dtype string, no list)")
			}
		case embedded.InputRecentItems:
			if in.DType != featurizer.String || in.Rank == 1 {
				return fault.Field("features.inputs."+in.Name, "invalid_feature_spec",
					"an embedded model reads recent_items as a list of strings (dtype string, transform list)")
			}
		}
	}
	return nil
}

func loadONNX(_ context.Context, ort config.ONNXRuntime, mv *registry.ModelVersion, opt registry.LoadOptions) (registry.Scorer, error) {
	b := mv.Backend
	cfg := onnx.Config{Timeout: time.Duration(b.TimeoutMS) * time.Millisecond, LibraryPath: ort.Library, IntraOpThreads: ort.IntraOpThreads}
	if b.Outputs != nil {
		cfg.Outputs = onnx.Outputs{Scores: b.Outputs.Scores, IDs: b.Outputs.IDs}
	}
	if b.Batching != nil {
		cfg.Batching = &onnx.Batching{MaxBatchSize: b.Batching.MaxBatchSize,
			BatchTimeout: time.Duration(b.Batching.BatchTimeoutUS) * time.Microsecond}
	}
	if opt.Plan != nil {
		cfg.Inputs = opt.Plan.Inputs()
	}
	m, err := onnx.Load(b.Path, cfg)
	if err != nil {
		var ve *onnx.ValidationError
		if errors.As(err, &ve) {
			return nil, &fault.Error{Kind: fault.Invalid, Code: "invalid_model", Field: ve.Field, Message: ve.Msg}
		}
		return nil, fault.Field("backend.path", "invalid_model", "%v", err)
	}
	return m, nil
}
