package tfserving

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

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
	if answered, items, err := m.withoutCall(req); answered {
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
	out := make([][]backend.Item, len(reqs))
	var call []*backend.Request // the requests that need the call, in order
	var at []int                // their places in reqs
	for r, req := range reqs {
		if answered, items, err := m.withoutCall(req); answered {
			if err != nil {
				return nil, fmt.Errorf("request %d: %w", r, err)
			}
			out[r] = items
			continue
		}
		if m.cfg.Outputs.IDs == "" && len(call) > 0 && len(req.Candidates) != len(call[0].Candidates) {
			return nil, fmt.Errorf("tfserving: %d candidates and %d: %w", len(call[0].Candidates), len(req.Candidates), backend.ErrNotStackable)
		}
		call = append(call, req)
		at = append(at, r)
	}
	if len(call) == 0 {
		return out, nil
	}
	if n := len(call[0].Candidates); m.cfg.Outputs.IDs == "" && n > MaxOutputRows/len(call) {
		// The response could not be read; each request alone may be.
		return nil, fmt.Errorf("tfserving: %d requests of %d candidates, more than the %d rows a response may rank: %w",
			len(call), n, MaxOutputRows, backend.ErrNotStackable)
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

// withoutCall reports whether Predict answers req without calling the
// server, and its answer: an error for K < 1 or for no candidates when
// the model scores them, no items for an empty candidates list.
func (m *Model) withoutCall(req *backend.Request) (bool, []backend.Item, error) {
	if req.K < 1 {
		return true, nil, badInput("k = %d, want at least 1", req.K)
	}
	if m.cfg.Outputs.IDs == "" && len(req.Candidates) == 0 {
		if req.Candidates == nil {
			return true, nil, badInput("model %q scores the request's candidates, but the request has none", m.cfg.ModelName)
		}
		return true, []backend.Item{}, nil // nothing to score: spare the call
	}
	return false, nil, nil
}

// call sends a Predict call with preq, the inputs of reqs, and ranks its
// response into lists, lists[r] for reqs[r]. The call's deadline is
// Config.Timeout or ctx's, whichever is earlier.
func (m *Model) call(ctx context.Context, preq *predictRequest, reqs []*backend.Request, lists [][]backend.Item) error {
	budget := m.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= budget {
		budget = time.Until(dl) // the caller's deadline comes first
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	// The codec writes the request and reads the outputs straight off the
	// wire (telemetry.PredictMethod traces the call by its method name).
	var resp predictResponse
	if err := m.cc.Invoke(ctx, apis.PredictionService_Predict_FullMethodName, preq, &resp, m.withCodec); err != nil {
		err = callError(ctx, "predict", budget, err)
		if errors.Is(err, backend.ErrUnavailable) {
			m.setHealth(err)
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
			if lists[r], err = rank(idList{strs: req.Candidates}, &row, req, false); err != nil {
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
		if lists[r], err = rank(idList{raw: ids[r*n : (r+1)*n]}, &row, req, req.Candidates != nil); err != nil {
			return err
		}
	}
	return nil
}

// rowLen checks that a tensor holds b rows, and returns the length N of a
// row: shape [b, N], or, when b is 1, [N] or [1, N].
func rowLen(t *tensor, alias string, b int) (int, error) {
	dims := t.dims
	var n int64
	switch {
	case b == 1 && len(dims) == 1 && dims[0] >= 0:
		n = dims[0]
	case len(dims) == 2 && dims[0] == int64(b) && dims[1] >= 0:
		n = dims[1]
	case b == 1:
		return 0, badOutput("output %q has shape %s, want [N] or [1, N]", alias, sizesString(dims))
	default:
		return 0, badOutput("output %q has shape %s, want [%d, N] for a batch of %d", alias, sizesString(dims), b, b)
	}
	if n > MaxOutputRows/int64(b) {
		// TensorFlow repeats a tensor's last value up to its shape, so a
		// response of a few bytes can claim any N: bound what is ranked.
		if b == 1 {
			return 0, badOutput("output %q has %d rows, more than the %d a response may rank", alias, n, MaxOutputRows)
		}
		return 0, badOutput("output %q has %d rows for each of %d requests, more than the %d a response may rank", alias, n, b, MaxOutputRows)
	}
	return int(n), nil
}

// MaxOutputRows bounds the rows (scores, ids) of one Predict response the
// gateway ranks; for a batch, the rows of all its requests together.
const MaxOutputRows = 1 << 20

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

func (s *scoreVec) at(i int) float64 {
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

// idList is the ids of the scored rows: the request's candidates, or the
// model's own ids.
type idList struct {
	strs []string
	raw  [][]byte
}

func (l *idList) cmp(a, b int32) int {
	if l.raw != nil {
		return bytes.Compare(l.raw[a], l.raw[b])
	}
	return strings.Compare(l.strs[a], l.strs[b])
}

func (l *idList) str(i int32) string {
	if l.raw != nil {
		return string(l.raw[i])
	}
	return l.strs[i]
}

// in reports whether row i's id is a key of set. The lookup does not
// allocate.
func (l *idList) in(i int32, set map[string]struct{}) bool {
	if l.raw != nil {
		_, ok := set[string(l.raw[i])]
		return ok
	}
	_, ok := set[l.strs[i]]
	return ok
}

type ranked struct {
	score float64
	row   int32
}

// rank returns the req.K best rows that are not excluded (and, with
// onlyCandidates, are candidates), best first, without duplicate ids.
func rank(ids idList, scores *scoreVec, req *backend.Request, onlyCandidates bool) ([]backend.Item, error) {
	var allowed map[string]struct{}
	if onlyCandidates {
		allowed = make(map[string]struct{}, len(req.Candidates))
		for _, c := range req.Candidates {
			allowed[c] = struct{}{}
		}
	}
	better := func(a, b ranked) bool {
		return a.score > b.score || (a.score == b.score && ids.cmp(a.row, b.row) < 0)
	}
	k := min(req.K, scores.n)
	// A heap of the k best so far, worst at the root.
	h := make([]ranked, 0, k)
	for i := range scores.n {
		row := int32(i)
		// Any non-finite score, even of a row filtered out below, says the
		// model is sick; it could not be sent as JSON either.
		s := scores.at(i)
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return nil, badOutput("score of %q is %v", ids.str(row), s)
		}
		if (req.Exclude != nil && ids.in(row, req.Exclude)) || (allowed != nil && !ids.in(row, allowed)) {
			continue
		}
		r := ranked{s, row}
		if len(h) < k {
			h = append(h, r)
			heapUp(h, len(h)-1, better)
		} else if k > 0 && better(r, h[0]) {
			h[0] = r
			heapDown(h, 0, better)
		}
	}
	byRank := func(a, b ranked) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	}
	slices.SortFunc(h, byRank)
	items := make([]backend.Item, len(h))
	for i, r := range h {
		items[i] = backend.Item{ID: ids.str(r.row), Score: r.score}
	}
	if !hasDuplicates(items) {
		return items, nil
	}
	// Rare: a duplicate id pushed another item out of the top k. Rank every
	// row and keep each id's first (best) occurrence.
	all := make([]ranked, 0, scores.n)
	for i := range scores.n {
		row := int32(i)
		if (req.Exclude != nil && ids.in(row, req.Exclude)) || (allowed != nil && !ids.in(row, allowed)) {
			continue
		}
		all = append(all, ranked{scores.at(i), row})
	}
	slices.SortFunc(all, byRank)
	seen := make(map[string]struct{}, k)
	items = items[:0]
	for _, r := range all {
		if len(items) == k {
			break
		}
		if ids.in(r.row, seen) {
			continue
		}
		id := ids.str(r.row)
		seen[id] = struct{}{}
		items = append(items, backend.Item{ID: id, Score: r.score})
	}
	return items, nil
}

// hasDuplicates reports whether two items share an id.
func hasDuplicates(items []backend.Item) bool {
	if len(items) <= 32 {
		for i := range items {
			for j := i + 1; j < len(items); j++ {
				if items[i].ID == items[j].ID {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(items))
	for _, it := range items {
		if _, dup := seen[it.ID]; dup {
			return true
		}
		seen[it.ID] = struct{}{}
	}
	return false
}

// heapUp and heapDown keep h a heap with the worst element (by better) at
// the root.
func heapUp(h []ranked, i int, better func(a, b ranked) bool) {
	for i > 0 {
		p := (i - 1) / 2
		if !better(h[p], h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDown(h []ranked, i int, better func(a, b ranked) bool) {
	for {
		worst := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) && better(h[worst], h[c]) {
				worst = c
			}
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}
