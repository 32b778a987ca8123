package oip

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
)

// invalid is a registration error naming the field at fault.
func invalid(field, format string, args ...any) error {
	return fault.Field(field, "invalid_model", format, args...)
}

// validate checks the version against the server (see Open).
func (m *Model) validate(ctx context.Context) error {
	if err := m.validateLive(ctx); err != nil {
		return err
	}
	if err := m.validateReady(ctx); err != nil {
		return err
	}
	md, err := m.fetchMetadata(ctx)
	if err != nil {
		return err
	}
	if err := m.checkInputs(md); err != nil {
		return err
	}
	return m.checkOutputs(md)
}

// versionField is the body field that picks the model version.
func (m *Model) versionField() string {
	if m.cfg.ModelVersion != "" {
		return "backend.model_version"
	}
	return "backend.model_name"
}

// callFailed turns a failed validation call into the error to report: the
// caller's own cancellation as is, an unreachable server or one that does
// not speak the protocol against the target, a model or version the server
// does not serve against the field that names it.
func (m *Model) callFailed(op string, err error) error {
	var ce *callError
	if !errors.As(err, &ce) {
		return invalid("backend.target", "%s: %v", op, err)
	}
	switch ce.kind {
	case failCanceled:
		return fmt.Errorf("oip %s: %w", op, context.Canceled)
	case failDeadline:
		return invalid("backend.target", "%s is unreachable: it did not answer %s within %s", m.cfg.Target, op, ValidateTimeout)
	case failUnreachable:
		return invalid("backend.target", "%s is unreachable: %s", m.cfg.Target, ce.msg)
	case failUnimplemented:
		return invalid("backend.target", "%s does not answer %s: is it the server's %s port (Triton: %s)? (%s)",
			m.cfg.Target, op, strings.ToUpper(m.cfg.Protocol), map[string]string{ProtocolGRPC: "8001", ProtocolHTTP: "8000"}[m.cfg.Protocol], ce.msg)
	case failNotFound:
		if op != "ServerLive" {
			return invalid(m.versionField(), "model %s is not served by %s: %s", m.describe(), m.cfg.Target, ce.msg)
		}
	}
	if op == "ServerLive" { // about the server, not the model
		return invalid("backend.target", "%s did not answer %s: %s", m.cfg.Target, op, ce.msg)
	}
	return invalid(m.versionField(), "%s for model %s failed: %s", op, m.describe(), ce.msg)
}

func (m *Model) validateLive(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	if err := m.tr.live(cctx); err != nil {
		return m.callFailed("ServerLive", err)
	}
	return nil
}

func (m *Model) validateReady(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	ready, why, err := m.tr.ready(cctx)
	if err != nil {
		return m.callFailed("ModelReady", err)
	}
	if !ready {
		return invalid(m.versionField(), "model %s is not ready on %s: %s", m.describe(), m.cfg.Target, why)
	}
	return nil
}

func (m *Model) fetchMetadata(ctx context.Context) (*modelMetadata, error) {
	cctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	md, err := m.tr.metadata(cctx)
	if err != nil {
		return nil, m.callFailed("ModelMetadata", err)
	}
	return md, nil
}

// find returns the tensor named name, or nil.
func find(ts []tensorMetadata, name string) *tensorMetadata {
	for i := range ts {
		if ts[i].Name == name {
			return &ts[i]
		}
	}
	return nil
}

// names lists the tensors' names, quoted, or "none".
func names(ts []tensorMetadata) string {
	if len(ts) == 0 {
		return "none"
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = fmt.Sprintf("%q", t.Name)
	}
	return strings.Join(out, ", ")
}

// checkInputs checks that the model takes every input the feature spec
// produces, with its datatype and a shape that can hold it.
func (m *Model) checkInputs(md *modelMetadata) error {
	for _, in := range m.cfg.Inputs {
		field := "features.inputs." + in.Name
		t := find(md.Inputs, in.Name)
		if t == nil {
			return invalid(field, "model %s has no input %q (its inputs: %s)", m.describe(), in.Name, names(md.Inputs))
		}
		if want := datatype(in.DType); t.Datatype != want {
			return invalid(field, "input %q is %s (%s) but model %s wants %s", in.Name, in.DType, want, m.describe(), t.Datatype)
		}
		if msg := backend.ShapeMismatch(t.Shape, in); msg != "" {
			return invalid(field, "input %q: %s in model %s", in.Name, msg, m.describe())
		}
	}
	return nil
}

// checkOutputs checks that the model has the mapped outputs with usable
// datatypes and shapes.
func (m *Model) checkOutputs(md *modelMetadata) error {
	check := func(field, name string, want ...string) error {
		t := find(md.Outputs, name)
		if t == nil {
			return invalid(field, "model %s has no output %q (its outputs: %s)", m.describe(), name, names(md.Outputs))
		}
		ok := false
		for _, w := range want {
			ok = ok || t.Datatype == w
		}
		if !ok {
			return invalid(field, "output %q is %s, want %s", name, t.Datatype, strings.Join(want, " or "))
		}
		if !backend.OutputShapeOK(t.Shape) {
			return invalid(field, "output %q has shape %s, want [N] or [1, N]", name, backend.ShapeString(t.Shape))
		}
		return nil
	}
	if err := check("backend.outputs.scores", m.cfg.Outputs.Scores, dtFP32, dtFP64); err != nil {
		return err
	}
	if m.cfg.Outputs.IDs != "" {
		return check("backend.outputs.ids", m.cfg.Outputs.IDs, dtBytes)
	}
	return nil
}
