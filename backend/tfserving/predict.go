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
	var items [1][]backend.Item
	if err := m.call(ctx, preq, []*backend.Request{req}, items[:]); err != nil {
		return nil, err
	}
	return items[0], nil
}

// PredictBatch scores the requests in one Predict call, their input
// tensors stacked along the leading dimension (each request's is 1), and
// returns for each request, in order, what Predict would return for it
// alone. A request Predict answers without a call (an empty candidates
// list) is answered the same way here, outside the batch.
//
// The requests stack when every input has the same name, dtype and shape
// beyond the leading dimension in all of them, and, with Outputs.IDs "",
// when they have as many candidates; otherwise the error wraps
// backend.ErrNotStackable and the server is not called. The model must
// answer a batch of B requests with outputs of shape [B, N], row r for
// request r (with B = 1, [N] and [1, N] are accepted as by Predict), and
// the response may hold at most MaxOutputRows rows in all: requests whose
// candidates together exceed it do not stack.
//
// The error is the whole call's, of the classes Predict's errors are, and
// comes with no list. PredictBatch is safe for concurrent use.
func (m *Model) PredictBatch(ctx context.Context, reqs []*backend.Request) ([][]backend.Item, error) {
	out, call, at, err := backend.SplitBatch(reqs, m.cfg.Outputs.IDs == "", ErrBadInput, m.cfg.ModelName)
	if err != nil {
		return nil, fmt.Errorf("tfserving: %w", err)
	}
	if len(call) == 0 {
		return out, nil
	}
	preq, err := m.batchRequest(call)
	if err != nil {
		return nil, err
	}
	lists := make([][]backend.Item, len(call))
	if err := m.call(ctx, preq, call, lists); err != nil {
		return nil, err
	}
	for i, r := range at {
		out[r] = lists[i]
	}
	return out, nil
}

// call sends a Predict call with preq, the inputs of reqs, and ranks its
// response into lists, lists[r] for reqs[r]. The call's deadline is
// Config.Timeout or ctx's, whichever is earlier.
func (m *Model) call(ctx context.Context, preq *predictRequest, reqs []*backend.Request, lists [][]backend.Item) error {
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
		return err
	}
	return m.items(&resp, reqs, lists)
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

// items reads the response's outputs into the ranked items of each of the
// requests whose inputs it was sent: lists[r], from row r of the outputs,
// for reqs[r].
func (m *Model) items(resp *predictResponse, reqs []*backend.Request, lists [][]backend.Item) error {
	if resp.err != nil {
		return fmt.Errorf("tfserving predict: %w: %w", backend.ErrBadOutput, resp.err)
	}
	out := &resp.out
	if !out.hasScores {
		return badOutput("no output %q in the response", m.cfg.Outputs.Scores)
	}
	b := len(reqs)
	if m.cfg.Outputs.IDs == "" {
		// PredictBatch sends only requests with as many candidates.
		n := len(reqs[0].Candidates)
		scores, err := readScores(&out.scores, m.cfg.Outputs.Scores, b, n)
		if err != nil {
			return err
		}
		for r, req := range reqs {
			row := scores.row(r)
			if lists[r], err = rankItems(backend.IDs{Strings: req.Candidates}, &row, req, false); err != nil {
				return err
			}
		}
		return nil
	}
	if !out.hasIDs {
		return badOutput("no output %q in the response", m.cfg.Outputs.IDs)
	}
	ids, n, err := readIDs(&out.ids, m.cfg.Outputs.IDs, b)
	if err != nil {
		return err
	}
	scores, err := readScores(&out.scores, m.cfg.Outputs.Scores, b, n)
	if err != nil {
		return err
	}
	for r, req := range reqs {
		row := scores.row(r)
		if lists[r], err = rankItems(backend.IDs{Bytes: ids[r*n : (r+1)*n]}, &row, req, req.Candidates != nil); err != nil {
			return err
		}
	}
	return nil
}

// rowLen checks that a tensor holds b rows, and returns the length N of a
// row: shape [b, N], or, when b is 1, [N] or [1, N]. TensorFlow repeats a
// tensor's last value up to its shape, so a response of a few bytes can
// claim any N: backend.RowLen bounds the rows of all b together.
func rowLen(t *tensor, alias string, b int) (int, error) {
	n, err := backend.RowLen(alias, t.dims, b)
	if err != nil {
		return 0, fmt.Errorf("tfserving predict: %w", err)
	}
	return n, nil
}

// MaxOutputRows bounds the rows (scores, ids) of one Predict response the
// gateway ranks; for a batch, the rows of all its requests together.
const MaxOutputRows = backend.MaxOutputRows

// scoreVec reads scores from whichever representation the tensor uses:
// the n scores from the off-th value on.
type scoreVec struct {
	f32  []float32
	f64  []float64
	raw  []byte
	wide bool // raw holds float64s
	off  int
	n    int
}

// Len is the number of scores.
func (s *scoreVec) Len() int { return s.n }

// At is score i.
func (s *scoreVec) At(i int) float64 {
	i += s.off
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

// row returns the scores of row r of a tensor of rows of s.n scores.
func (s *scoreVec) row(r int) scoreVec {
	c := *s
	c.off = r * s.n
	return c
}

// readScores checks the scores tensor against the b rows of n items it
// must score.
func readScores(t *tensor, alias string, b, n int) (scoreVec, error) {
	s := scoreVec{n: n}
	got, err := rowLen(t, alias, b)
	if err != nil {
		return s, err
	}
	if got != n {
		return s, badOutput("output %q has %d scores for %d items", alias, got, n)
	}
	n *= b // the values of all the rows
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

// readIDs reads a DT_STRING tensor of b rows from string_val or, as
// TensorFlow encodes strings in tensor_content, from a list of varint
// lengths followed by the bytes. It returns the ids of all rows, in order,
// and the length of a row.
func readIDs(t *tensor, alias string, b int) ([][]byte, int, error) {
	if t.dtype != framework.DataType_DT_STRING {
		return nil, 0, badOutput("output %q is %s, want DT_STRING", alias, t.dtype)
	}
	per, err := rowLen(t, alias, b)
	if err != nil {
		return nil, 0, err
	}
	ids, err := readStrings(t, alias, per*b)
	return ids, per, err
}

// readStrings reads the n strings of a DT_STRING tensor.
func readStrings(t *tensor, alias string, n int) ([][]byte, error) {
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
