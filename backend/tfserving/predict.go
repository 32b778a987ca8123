package tfserving

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// Predict calls TF Serving's Predict with the request's input tensors and
// returns at most req.K items, best first: by score descending, ties by id
// ascending (byte order). Items in req.Exclude are never returned, nor, when
// req.Candidates is non-nil, items outside it; an id the model returns twice
// is returned once, with its best score.
//
// With Outputs.IDs "" the scores output must be a DT_FLOAT or DT_DOUBLE tensor
// of shape [C] or [1, C], C = len(req.Candidates), scoring the candidates in
// order; req.Candidates must then be non-nil (an empty list returns no items
// without calling the server). With Outputs.IDs set, the ids
// output (DT_STRING) and the scores output must both have shape [N] or
// [1, N].
//
// The call's deadline is Config.Timeout or ctx's, whichever is earlier.
// Errors wrap backend.ErrUnavailable (server unreachable, model or version
// not loaded, load shed), ErrDeadline (which also matches
// context.DeadlineExceeded), context.Canceled, backend.ErrBadOutput (outputs
// missing or of the wrong dtype or shape, NaN or infinite scores, a response
// protobuf cannot decode) or
// ErrBadInput (a malformed request, or INVALID_ARGUMENT from the server;
// these also match backend.ErrRejectedInput); Classify names the class. Predict is safe for
// concurrent use.
func (m *Model) Predict(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	if items, done, err := backend.CheckRequest(req, m.cfg.Outputs.IDs == "", ErrBadInput, m.cfg.ModelName); done {
		return items, err
	}
	preq, err := m.request(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel, budget := backend.CallContext(ctx, m.cfg.Timeout)
	defer cancel()
	// The codec writes the request and reads the outputs straight off the
	// wire (telemetry.PredictMethod traces the call by its method name).
	var resp predictResponse
	if err := m.cc.Invoke(ctx, apis.PredictionService_Predict_FullMethodName, preq, &resp, m.withCodec); err != nil {
		err = callError(ctx, "predict", budget, err)
		if errors.Is(err, backend.ErrUnavailable) {
			m.health.Set(err)
		}
		return nil, err
	}
	return m.items(&resp, req)
}

// tensor is what Predict reads of an output TensorProto: its dtype, its
// shape and its values, in whichever fields the server put them. It holds no
// reference to the response's wire bytes.
type tensor struct {
	dtype   framework.DataType
	dims    []int64   // tensor_shape's dim sizes
	content []byte    // tensor_content
	floats  []float32 // float_val
	doubles []float64 // double_val
	strings [][]byte  // string_val
}

// outputs are the two outputs Predict reads: the scores and, when
// Outputs.IDs is set, the ids. The has flags say whether the response had
// them at all.
type outputs struct {
	scores, ids       tensor
	hasScores, hasIDs bool
}

// items reads the response's outputs into the ranked items.
func (m *Model) items(resp *predictResponse, req *backend.Request) ([]backend.Item, error) {
	if resp.err != nil {
		return nil, fmt.Errorf("tfserving predict: %w: %w", backend.ErrBadOutput, resp.err)
	}
	out := &resp.out
	if !out.hasScores {
		return nil, badOutput("no output %q in the response", m.cfg.Outputs.Scores)
	}
	if m.cfg.Outputs.IDs == "" {
		scores, err := readScores(&out.scores, m.cfg.Outputs.Scores, len(req.Candidates))
		if err != nil {
			return nil, err
		}
		return rankItems(backend.IDs{Strings: req.Candidates}, &scores, req, false)
	}
	if !out.hasIDs {
		return nil, badOutput("no output %q in the response", m.cfg.Outputs.IDs)
	}
	ids, err := readIDs(&out.ids, m.cfg.Outputs.IDs)
	if err != nil {
		return nil, err
	}
	scores, err := readScores(&out.scores, m.cfg.Outputs.Scores, len(ids))
	if err != nil {
		return nil, err
	}
	return rankItems(backend.IDs{Bytes: ids}, &scores, req, req.Candidates != nil)
}

// vectorLen checks that a tensor has shape [N] or [1, N] and returns N.
// TensorFlow repeats a tensor's last value up to its shape, so a response
// of a few bytes can claim any N: backend.VectorLen bounds it.
func vectorLen(t *tensor, alias string) (int, error) {
	n, err := backend.VectorLen(alias, t.dims)
	if err != nil {
		return 0, fmt.Errorf("tfserving predict: %w", err)
	}
	return n, nil
}

// MaxOutputRows bounds the rows (scores, ids) of one Predict response the
// gateway ranks.
const MaxOutputRows = backend.MaxOutputRows

// scoreVec reads scores from whichever representation the tensor uses.
type scoreVec struct {
	f32  []float32
	f64  []float64
	raw  []byte
	wide bool // raw holds float64s
	n    int
}

// Len is the number of scores.
func (s *scoreVec) Len() int { return s.n }

// At is score i.
func (s *scoreVec) At(i int) float64 {
	switch {
	case s.raw != nil && s.wide:
		return math.Float64frombits(binary.LittleEndian.Uint64(s.raw[8*i:]))
	case s.raw != nil:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(s.raw[4*i:])))
	case s.f64 != nil:
		return s.f64[min(i, len(s.f64)-1)]
	}
	return float64(s.f32[min(i, len(s.f32)-1)])
}

// readScores checks the scores tensor against the n items it must score.
func readScores(t *tensor, alias string, n int) (scoreVec, error) {
	s := scoreVec{n: n}
	got, err := vectorLen(t, alias)
	if err != nil {
		return s, err
	}
	if got != n {
		return s, badOutput("output %q has %d scores for %d items", alias, got, n)
	}
	var size, typed int
	switch t.dtype {
	case framework.DataType_DT_FLOAT:
		size, typed, s.f32 = 4, len(t.floats), t.floats
	case framework.DataType_DT_DOUBLE:
		size, typed, s.f64, s.wide = 8, len(t.doubles), t.doubles, true
	default:
		return s, badOutput("output %q is %s, want DT_FLOAT or DT_DOUBLE", alias, t.dtype)
	}
	if c := t.content; len(c) > 0 {
		if len(c) != size*n {
			return s, badOutput("output %q has %d bytes of tensor_content for %d scores", alias, len(c), n)
		}
		s.raw, s.f32, s.f64 = c, nil, nil
	} else if n > 0 && (typed == 0 || typed > n) {
		return s, badOutput("output %q has %d values for %d scores", alias, typed, n)
	}
	return s, nil
}

// readIDs reads a DT_STRING vector from string_val or, as TensorFlow encodes
// strings in tensor_content, from a list of varint lengths followed by the
// bytes.
func readIDs(t *tensor, alias string) ([][]byte, error) {
	if t.dtype != framework.DataType_DT_STRING {
		return nil, badOutput("output %q is %s, want DT_STRING", alias, t.dtype)
	}
	n, err := vectorLen(t, alias)
	if err != nil {
		return nil, err
	}
	if c := t.content; len(c) > 0 {
		ids, ok := decodeStringList(c, n)
		if !ok {
			return nil, badOutput("output %q has tensor_content that is not %d strings", alias, n)
		}
		return ids, nil
	}
	ids := t.strings
	switch {
	case len(ids) == n:
		return ids, nil
	case len(ids) == 0 || len(ids) > n:
		return nil, badOutput("output %q has %d ids for shape [%d]", alias, len(ids), n)
	}
	full := make([][]byte, n) // TensorFlow repeats the last value
	copy(full, ids)
	for i := len(ids); i < n; i++ {
		full[i] = ids[len(ids)-1]
	}
	return full, nil
}

// decodeStringList decodes TensorFlow's string tensor_content: n varint
// lengths, then the n strings' bytes.
func decodeStringList(c []byte, n int) ([][]byte, bool) {
	if n > len(c) {
		// Each string takes at least a byte of length: a shape this large
		// is wrong, and must not size the allocations below.
		return nil, false
	}
	lens := make([]uint64, n)
	for i := range lens {
		v, k := binary.Uvarint(c)
		if k <= 0 {
			return nil, false
		}
		lens[i], c = v, c[k:]
	}
	out := make([][]byte, n)
	for i, l := range lens {
		if l > uint64(len(c)) {
			return nil, false
		}
		out[i], c = c[:l:l], c[l:]
	}
	return out, len(c) == 0
}

// rankItems ranks the rows with backend.Rank, its errors in Predict's terms.
func rankItems(ids backend.IDs, scores *scoreVec, req *backend.Request, onlyCandidates bool) ([]backend.Item, error) {
	items, err := backend.Rank(ids, scores, req, onlyCandidates)
	if err != nil {
		return nil, fmt.Errorf("tfserving predict: %w", err)
	}
	return items, nil
}
