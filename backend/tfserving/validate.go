package tfserving

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// metadataSignatureDef is the metadata field GetModelMetadata must be asked
// for: TF Serving answers nothing else.
const metadataSignatureDef = "signature_def"

// validate checks the version against the server (see Open).
func (m *Model) validate(ctx context.Context) error {
	if err := m.validateStatus(ctx); err != nil {
		return err
	}
	sig, err := m.fetchSignature(ctx)
	if err != nil {
		return err
	}
	if err := checkInputs(sig, m.cfg); err != nil {
		return err
	}
	return checkOutputs(sig, m.cfg)
}

// versionField is the body field that picks the version.
func (m *Model) versionField() string {
	switch {
	case m.cfg.Version > 0:
		return "backend.version"
	case m.cfg.VersionLabel != "":
		return "backend.version_label"
	}
	return "backend.model_name"
}

// unreachable reports a call that failed for want of a server, or nil when
// err is a server's answer. The caller's own cancellation is returned as is.
func (m *Model) unreachable(ctx context.Context, op string, err error) error {
	if ctx.Err() == context.Canceled {
		return fmt.Errorf("tfserving %s: %w", op, context.Canceled)
	}
	st := status.Convert(err)
	switch {
	case ctx.Err() == context.DeadlineExceeded || st.Code() == codes.DeadlineExceeded:
		return invalid("backend.target", "%s is unreachable: it did not answer %s within %s", m.cfg.Target, op, ValidateTimeout)
	case st.Code() == codes.Unavailable || st.Code() == codes.Canceled:
		return invalid("backend.target", "%s is unreachable: %s", m.cfg.Target, st.Message())
	case st.Code() == codes.Unimplemented:
		return invalid("backend.target", "%s does not implement %s: is it TF Serving's gRPC port? (%s)", m.cfg.Target, op, st.Message())
	}
	return nil
}

func (m *Model) validateStatus(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	resp, err := m.models.GetModelStatus(cctx, &apis.GetModelStatusRequest{ModelSpec: m.statusSpec()})
	if err != nil {
		if e := m.unreachable(cctx, "GetModelStatus", err); e != nil {
			return e
		}
		st := status.Convert(err)
		if st.Code() == codes.NotFound && m.cfg.Version > 0 {
			return m.versionNotFound(ctx, st.Message())
		}
		if st.Code() == codes.NotFound {
			return invalid("backend.model_name", "model %q is not served by %s: %s", m.cfg.ModelName, m.cfg.Target, st.Message())
		}
		return invalid("backend.target", "GetModelStatus for model %q failed: %s: %s", m.cfg.ModelName, st.Code(), st.Message())
	}
	if _, err := m.availableIn(resp); err != nil {
		return invalid(m.versionField(), "%v", err)
	}
	return nil
}

// versionNotFound tells a missing model from a missing version, listing the
// versions the server has.
func (m *Model) versionNotFound(ctx context.Context, msg string) error {
	cctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	resp, err := m.models.GetModelStatus(cctx, &apis.GetModelStatusRequest{ModelSpec: &apis.ModelSpec{Name: m.cfg.ModelName}})
	if err != nil {
		if e := m.unreachable(cctx, "GetModelStatus", err); e != nil {
			return e
		}
		if status.Code(err) == codes.NotFound {
			return invalid("backend.model_name", "model %q is not served by %s: %s", m.cfg.ModelName, m.cfg.Target, status.Convert(err).Message())
		}
	}
	return invalid("backend.version", "version %d of model %q is not served by %s (%s)", m.cfg.Version, m.cfg.ModelName, m.cfg.Target, describeVersions(resp.GetModelVersionStatus()))
}

// fetchSignature reads the configured signature with GetModelMetadata.
func (m *Model) fetchSignature(ctx context.Context) (*tfpb.SignatureDef, error) {
	cctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	resp, err := m.pred.GetModelMetadata(cctx, &apis.GetModelMetadataRequest{
		ModelSpec:     m.modelSpec(false),
		MetadataField: []string{metadataSignatureDef},
	})
	if err != nil {
		if e := m.unreachable(cctx, "GetModelMetadata", err); e != nil {
			return nil, e
		}
		st := status.Convert(err)
		if m.cfg.VersionLabel != "" {
			return nil, invalid("backend.version_label", "version label %q of model %q does not resolve: %s: %s", m.cfg.VersionLabel, m.cfg.ModelName, st.Code(), st.Message())
		}
		return nil, invalid(m.versionField(), "GetModelMetadata for model %q failed: %s: %s", m.cfg.ModelName, st.Code(), st.Message())
	}
	raw := resp.GetMetadata()[metadataSignatureDef]
	if raw == nil {
		return nil, invalid("backend.target", "GetModelMetadata for model %q returned no %q metadata", m.cfg.ModelName, metadataSignatureDef)
	}
	var sigs apis.SignatureDefMap
	if err := raw.UnmarshalTo(&sigs); err != nil {
		return nil, invalid("backend.target", "GetModelMetadata for model %q: reading %q: %v", m.cfg.ModelName, metadataSignatureDef, err)
	}
	sig := sigs.GetSignatureDef()[m.cfg.SignatureName]
	if sig == nil {
		return nil, invalid("backend.signature_name", "model %q has no signature %q (it has %s)", m.cfg.ModelName, m.cfg.SignatureName, names(sigs.GetSignatureDef()))
	}
	return sig, nil
}

// dataTypes maps the featurizer's dtypes to TensorFlow's.
var dataTypes = [...]framework.DataType{
	featurizer.Float32: framework.DataType_DT_FLOAT,
	featurizer.Float64: framework.DataType_DT_DOUBLE,
	featurizer.Int32:   framework.DataType_DT_INT32,
	featurizer.Int64:   framework.DataType_DT_INT64,
	featurizer.String:  framework.DataType_DT_STRING,
	featurizer.Bool:    framework.DataType_DT_BOOL,
}

// dataType is TensorFlow's DataType for d, DT_INVALID for an invalid d.
func dataType(d featurizer.DType) framework.DataType {
	if int(d) < len(dataTypes) {
		return dataTypes[d]
	}
	return framework.DataType_DT_INVALID
}

// checkInputs checks that the signature takes every input the feature spec
// produces, with the same dtype and a shape that can hold it.
func checkInputs(sig *tfpb.SignatureDef, cfg Config) error {
	for _, in := range cfg.Inputs {
		field := "features.inputs." + in.Name
		ti := sig.GetInputs()[in.Name]
		if ti == nil {
			return invalid(field, "signature %q has no input %q (its inputs: %s)", cfg.SignatureName, in.Name, names(sig.GetInputs()))
		}
		if want := dataType(in.DType); ti.GetDtype() != want {
			return invalid(field, "input %q is %s (%s) but signature %q wants %s", in.Name, in.DType, want, cfg.SignatureName, ti.GetDtype())
		}
		if msg := shapeMismatch(ti.GetTensorShape(), in); msg != "" {
			return invalid(field, "input %q: %s in signature %q", in.Name, msg, cfg.SignatureName)
		}
	}
	return nil
}

// shapeMismatch says why a signature's input shape cannot take the tensors
// the input builds, or "". Unknown rank and unknown (-1) dimensions accept
// anything.
func shapeMismatch(sh *framework.TensorShapeProto, in featurizer.InputInfo) string {
	if sh == nil || sh.GetUnknownRank() {
		return ""
	}
	return backend.ShapeMismatch(sizes(sh.GetDim()), in)
}

// checkOutputs checks that the signature has the mapped outputs with usable
// dtypes and shapes.
func checkOutputs(sig *tfpb.SignatureDef, cfg Config) error {
	check := func(field, alias string, ok func(framework.DataType) bool, want string) error {
		ti := sig.GetOutputs()[alias]
		if ti == nil {
			return invalid(field, "signature %q has no output %q (its outputs: %s)", cfg.SignatureName, alias, names(sig.GetOutputs()))
		}
		if !ok(ti.GetDtype()) {
			return invalid(field, "output %q is %s, want %s", alias, ti.GetDtype(), want)
		}
		if sh := ti.GetTensorShape(); sh != nil && !sh.GetUnknownRank() && !backend.OutputShapeOK(sizes(sh.GetDim())) {
			return invalid(field, "output %q has shape %s, want [N] or [1, N]", alias, backend.ShapeString(sizes(sh.GetDim())))
		}
		return nil
	}
	isScore := func(d framework.DataType) bool {
		return d == framework.DataType_DT_FLOAT || d == framework.DataType_DT_DOUBLE
	}
	if err := check("backend.outputs.scores", cfg.Outputs.Scores, isScore, "DT_FLOAT or DT_DOUBLE"); err != nil {
		return err
	}
	if cfg.Outputs.IDs != "" {
		isID := func(d framework.DataType) bool { return d == framework.DataType_DT_STRING }
		return check("backend.outputs.ids", cfg.Outputs.IDs, isID, "DT_STRING")
	}
	return nil
}

// sizes are the dims' sizes.
func sizes(dims []*framework.TensorShapeProto_Dim) []int64 {
	out := make([]int64, len(dims))
	for i, d := range dims {
		out[i] = d.GetSize()
	}
	return out
}

// names lists a map's keys, sorted and quoted, or "none".
func names[V any](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, fmt.Sprintf("%q", k))
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}
