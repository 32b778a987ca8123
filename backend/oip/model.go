package oip

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/featurizer"
)

// transport is one protocol's calls to the server, for one model version.
// Its errors are *callError values telling the failures apart.
type transport interface {
	// infer runs inference on the inputs and returns the mapped outputs.
	infer(ctx context.Context, in []featurizer.Tensor) (answer, error)
	// metadata returns the model's inputs and outputs.
	metadata(ctx context.Context) (*modelMetadata, error)
	// ready reports whether the model is ready; when it is not, why.
	ready(ctx context.Context) (bool, string, error)
	// live checks that the server answers the protocol and is live.
	live(ctx context.Context) error
	// close releases the transport's connections.
	close() error
}

// tensorMetadata is one input or output of ModelMetadata.
type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// modelMetadata is what ModelMetadata returns of a model.
type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

// Model is one model version served over the protocol, made by Open (the
// zero value is not usable). It is safe for concurrent use. Its readiness
// is polled in the background from Open until Close.
type Model struct {
	cfg       Config
	tr        transport
	health    remote.Health
	closeOnce sync.Once
}

// Open returns a Model for cfg, over a new connection to cfg.Target.
//
// With validate (registering a version), Open checks the server before
// returning: it must be live (ServerLive), the model ready (ModelReady),
// and ModelMetadata must list every input of cfg.Inputs with its datatype
// and a shape that holds it (-1 matches any size), and the outputs
// cfg.Outputs maps, with usable datatypes and shapes. Each call has a
// deadline of ValidateTimeout (and ctx's). Any mismatch, and an unreachable
// server, is a *fault.Error (code invalid_model) naming the field at fault;
// the Model starts healthy.
//
// Without validate (start-up), Open never fails because the server is
// unreachable or does not serve the model: the Model starts unhealthy and
// becomes healthy when a ModelReady poll succeeds.
//
// Errors in cfg itself are *fault.Error values in both cases.
func Open(ctx context.Context, cfg Config, validate bool) (*Model, error) {
	if err := cfg.spec().Check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var tr transport
	var err error
	if cfg.Protocol == ProtocolHTTP {
		tr, err = newHTTPTransport(cfg)
	} else {
		tr, err = newGRPCTransport(cfg)
	}
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, tr: tr}
	if validate {
		if err := m.validate(ctx); err != nil {
			tr.close()
			return nil, err
		}
		m.health.Set(nil)
	}
	m.health.Start(cfg.HealthInterval, ValidateTimeout, !validate, m.checkReady)
	return m, nil
}

// spec is the backend section c describes, for Check.
func (c Config) spec() *Spec {
	out := c.Outputs
	return &Spec{Target: c.Target, Protocol: c.Protocol, ModelName: c.ModelName, ModelVersion: c.ModelVersion,
		Outputs: &out, TLS: c.TLS}
}

// outputNames are the outputs an inference call asks for: the scores and,
// when mapped, the ids.
func (c *Config) outputNames() []string {
	if c.Outputs.IDs == "" {
		return []string{c.Outputs.Scores}
	}
	return []string{c.Outputs.Scores, c.Outputs.IDs}
}

// Predict runs inference with the request's input tensors and returns at
// most req.K items, best first: by score descending, ties by id ascending
// (byte order). Items in req.Exclude are never returned, nor, when
// req.Candidates is non-nil, items outside it; an id the model returns
// twice is returned once, with its best score.
//
// With Outputs.IDs "" the scores output must be an FP32 or FP64 tensor of
// shape [C] or [1, C], C = len(req.Candidates), scoring the candidates in
// order; req.Candidates must then be non-nil (an empty list returns no
// items without calling the server). With Outputs.IDs set, the ids output
// (BYTES) and the scores output must both have shape [N] or [1, N].
//
// The call's deadline is Config.Timeout or ctx's, whichever is earlier, and
// the W3C traceparent of ctx's span goes with it (gRPC metadata, HTTP
// header). Errors match backend.ErrUnavailable (server unreachable, model
// or version not served, load shed), context.DeadlineExceeded,
// context.Canceled, backend.ErrBadOutput (outputs missing or of the wrong
// datatype or shape, NaN or infinite scores, a response that does not
// decode or is larger than MaxResponseBytes) or ErrBadInput (a malformed
// request, or the server refusing the input; these are *backend.InputError
// and match backend.ErrRejectedInput too): backend.Classify names the
// class. Predict is safe for concurrent use.
func (m *Model) Predict(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	if items, done, err := backend.CheckRequest(req, m.cfg.Outputs.IDs == "", ErrBadInput, m.cfg.ModelName); done {
		return items, err
	}
	var lists [1][]backend.Item
	if err := m.infer(ctx, req.Inputs, []*backend.Request{req}, lists[:]); err != nil {
		return nil, err
	}
	return lists[0], nil
}

var _ backend.BatchScorer = (*Model)(nil)

// PredictBatch scores the requests in one inference call (one ModelInfer,
// or one POST …/infer), their input tensors stacked along the leading
// dimension (each request's is 1), and returns for each request, in
// order, what Predict would return for it alone. A request Predict answers
// without a call (an empty candidates list) is answered the same way here,
// outside the batch.
//
// The requests stack when every input has the same name, datatype and
// shape beyond the leading dimension in all of them (backend.CheckStack),
// and, with Outputs.IDs "", when they have as many candidates; otherwise
// the error wraps backend.ErrNotStackable and the server is not called.
// The model must answer a batch of B requests with outputs of shape
// [B, N], row r for request r (with B = 1, [N] and [1, N] are accepted as
// by Predict), and the answer may hold at most backend.MaxOutputRows rows
// in all: requests whose candidates together exceed it do not stack.
//
// The error is the whole call's, of the classes Predict's errors are, and
// comes with no list. PredictBatch is safe for concurrent use.
func (m *Model) PredictBatch(ctx context.Context, reqs []*backend.Request) ([][]backend.Item, error) {
	out, call, at, err := backend.SplitBatch(reqs, m.cfg.Outputs.IDs == "", ErrBadInput, m.cfg.ModelName)
	if err != nil {
		return nil, fmt.Errorf("oip: %w", err)
	}
	if len(call) == 0 {
		return out, nil
	}
	for _, req := range call {
		for i := range req.Inputs {
			if _, err := checkInput(&req.Inputs[i]); err != nil {
				return nil, err
			}
		}
	}
	if err := backend.CheckStack(call); err != nil {
		return nil, fmt.Errorf("oip: %w", err)
	}
	lists := make([][]backend.Item, len(call))
	if err := m.infer(ctx, backend.Stack(call), call, lists); err != nil {
		return nil, err
	}
	for i, r := range at {
		out[r] = lists[i]
	}
	return out, nil
}

// infer runs one inference call with the inputs in, those of reqs, and
// ranks its answer into lists, lists[r] for reqs[r]. The call's deadline
// is Config.Timeout or ctx's, whichever is earlier.
func (m *Model) infer(ctx context.Context, in []featurizer.Tensor, reqs []*backend.Request, lists [][]backend.Item) error {
	ctx, cancel, budget := backend.CallContext(ctx, m.cfg.Timeout)
	defer cancel()
	ans, err := m.tr.infer(ctx, in)
	if err != nil {
		if errors.Is(err, backend.ErrUnavailable) {
			m.health.Set(err)
		}
		return inferError(err, budget)
	}
	return m.items(ans, reqs, lists)
}

// items ranks the outputs of an answer to the requests reqs: lists[r],
// from row r of the outputs, for reqs[r].
func (m *Model) items(ans answer, reqs []*backend.Request, lists [][]backend.Item) error {
	names := &m.cfg.Outputs
	if ans.scores == nil {
		return badOutput("no output %q in the response", names.Scores)
	}
	b := len(reqs)
	var ids [][]byte
	var scores *scoreVec
	var n int
	var err error
	if names.IDs == "" {
		// PredictBatch sends only requests with as many candidates.
		n = len(reqs[0].Candidates)
	} else {
		if ans.ids == nil {
			return badOutput("no output %q in the response", names.IDs)
		}
		if ids, n, err = readIDs(ans.ids, names.IDs, b); err != nil {
			return err
		}
	}
	if scores, err = readScores(ans.scores, names.Scores, b, n); err != nil {
		return err
	}
	for r, req := range reqs {
		rowIDs := backend.IDs{Strings: req.Candidates}
		if names.IDs != "" {
			rowIDs = backend.IDs{Bytes: ids[r*n : (r+1)*n]}
		}
		if lists[r], err = backend.Rank(rowIDs, scores.row(r, n), req, names.IDs != "" && req.Candidates != nil); err != nil {
			return fmt.Errorf("oip infer: %w", err)
		}
	}
	return nil
}

// Healthy reports whether the last readiness poll found the model ready
// (after a successful validation, until the first poll says otherwise). A
// Predict that finds the server unavailable marks the model unhealthy at
// once; the next successful poll restores it. It is cheap (one atomic
// load).
func (m *Model) Healthy() bool { return m.health.Healthy() }

// HealthError is why the model is unhealthy, nil when it is healthy.
func (m *Model) HealthError() error { return m.health.Err() }

// Close stops the readiness poll and closes the model's connection. Calls
// in flight may fail. It is safe to call more than once.
func (m *Model) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.health.Stop()
		err = m.tr.close()
	})
	return err
}

// checkReady is the health check: ModelReady must answer true.
func (m *Model) checkReady(ctx context.Context) error {
	ready, why, err := m.tr.ready(ctx)
	if err == nil && !ready {
		err = fmt.Errorf("oip ModelReady: model %s is not ready: %s", m.describe(), why)
	}
	return err
}

// describe names the model (and version) in messages: "ranker" or
// "ranker" version "3".
func (m *Model) describe() string {
	if m.cfg.ModelVersion == "" {
		return fmt.Sprintf("%q", m.cfg.ModelName)
	}
	return fmt.Sprintf("%q version %q", m.cfg.ModelName, m.cfg.ModelVersion)
}

// traceHeaders calls set with the W3C trace context (traceparent, and
// tracestate when there is one) of ctx's span, when it has a valid one.
func traceHeaders(ctx context.Context, set func(key, value string)) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	for k, v := range c {
		set(k, v)
	}
}
