package onnx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

// ErrBadInput is wrapped by Predict's errors about the request itself: a
// missing input, an input of the wrong dtype or shape, K < 1, no
// candidates for a model whose scores are aligned with them, or ONNX
// Runtime refusing an input tensor. They are *backend.InputError and match
// backend.ErrRejectedInput.
var ErrBadInput = errors.New("onnx: bad input")

// errClosed is returned by Predict after Close.
var errClosed = fmt.Errorf("%w: onnx model closed", backend.ErrUnavailable)

// Predict runs the model and returns the req.K best items, best first
// (score descending, ties by id ascending). Items in req.Exclude are never
// returned; when req.Candidates is non-nil only candidates are returned.
// How scores become items depends on the outputs:
//
//   - scores aligned with req.Candidates (no items.txt): score i belongs to
//     candidate i; a request without candidates is ErrBadInput.
//   - scores over the catalogue of items.txt: the top k of the catalogue,
//     restricted to the candidates that are in it.
//   - ids + scores: the model's own list, filtered and re-ranked.
//
// A duplicate id keeps its best score. Output of the wrong size, or with a
// NaN or infinite score, wraps backend.ErrBadOutput. With batching the request may run
// with others; it never waits past ctx's deadline (or Config.Timeout).
func (m *Model) Predict(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	p, err := m.prepare(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := m.deadline(ctx)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var row *outputRow
	if m.batcher != nil {
		row, err = m.batcher.do(ctx, p)
	} else {
		var rows []outputRow
		rows, err = m.run(ctx, []*prepared{p})
		if err == nil {
			row = &rows[0]
		}
	}
	if err != nil {
		return nil, err
	}
	return m.rank(req, row)
}

// deadline returns ctx bounded by Config.Timeout, when set.
func (m *Model) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if m.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, m.cfg.Timeout)
	}
	return ctx, func() {}
}

// prepared is a request's inputs, checked and in session order, with the
// key of their shapes (requests with equal keys can share a batch).
type prepared struct {
	req    *backend.Request
	inputs []*featurizer.Tensor
	key    string
}

// prepare checks the request, as Predict's errors say, and its inputs.
func (m *Model) prepare(req *backend.Request) (*prepared, error) {
	if req.K < 1 {
		return nil, backend.RejectInput(ErrBadInput, "k = %d, want at least 1", req.K)
	}
	if m.mode == modeAligned && req.Candidates == nil {
		return nil, backend.RejectInput(ErrBadInput, "this model scores the request's candidates, and the request has none")
	}
	p := &prepared{req: req, inputs: make([]*featurizer.Tensor, len(m.inputs))}
	var key strings.Builder
	for i, gi := range m.inputs {
		t := req.Input(gi.name)
		if t == nil {
			return nil, backend.RejectInput(ErrBadInput, "input %q is missing", gi.name)
		}
		if t.DType != gi.dtype {
			return nil, backend.RejectInput(ErrBadInput, "input %q is %s, the model wants %s", gi.name, t.DType, gi.dtype)
		}
		if len(t.Shape) != len(gi.dims) || len(t.Shape) == 0 || t.Shape[0] != 1 {
			return nil, backend.RejectInput(ErrBadInput, "input %q has shape %v, the model wants %v", gi.name, t.Shape, gi.dims)
		}
		n := int64(1)
		for j, d := range t.Shape {
			if d < 0 || (gi.dims[j] >= 0 && d != gi.dims[j]) {
				return nil, backend.RejectInput(ErrBadInput, "input %q has shape %v, the model wants %v", gi.name, t.Shape, gi.dims)
			}
			n *= d
		}
		if int64(t.Len()) != n {
			return nil, backend.RejectInput(ErrBadInput, "input %q has %d values for shape %v", gi.name, t.Len(), t.Shape)
		}
		p.inputs[i] = t
		for _, d := range t.Shape[1:] {
			key.WriteString(strconv.FormatInt(d, 10))
			key.WriteByte(',')
		}
		key.WriteByte(';')
	}
	p.key = key.String()
	return p, nil
}

// outputRow is one request's slice of the outputs.
type outputRow struct {
	ids    []string
	scores []float64
}

// run feeds the requests, whose keys are equal, as one batch and returns
// each request's output row. ctx cancels the run.
func (m *Model) run(ctx context.Context, ps []*prepared) ([]outputRow, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, errClosed
	}
	b := int64(len(ps))
	ins := make([]ort.Value, len(m.inputs))
	defer func() {
		for _, v := range ins {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i := range m.inputs {
		v, err := batchTensor(ps, i, b)
		if err != nil {
			return nil, err
		}
		ins[i] = v
	}
	outs := make([]ort.Value, len(m.outNames))
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	m.runs.Add(1)
	if err := m.runSession(ctx, ins, outs); err != nil {
		return nil, err
	}

	rows := make([]outputRow, len(ps))
	scoresOut := outs[len(outs)-1]
	scores, shape, err := floats(scoresOut)
	if err != nil {
		return nil, fmt.Errorf("%w: output %q: %v", backend.ErrBadOutput, m.cfg.Outputs.Scores, err)
	}
	per, err := perRow(shape, b, len(scores))
	if err != nil {
		return nil, fmt.Errorf("%w: output %q: %v", backend.ErrBadOutput, m.cfg.Outputs.Scores, err)
	}
	for r := range rows {
		rows[r].scores = scores[r*per : (r+1)*per]
	}
	if m.mode == modeIDs {
		st, ok := outs[0].(*ort.StringTensor)
		if !ok {
			return nil, fmt.Errorf("%w: output %q is not a string tensor", backend.ErrBadOutput, m.cfg.Outputs.IDs)
		}
		ids, err := st.GetContents()
		if err != nil {
			return nil, fmt.Errorf("%w: output %q: %v", backend.ErrBadOutput, m.cfg.Outputs.IDs, err)
		}
		if len(ids) != len(scores) {
			return nil, fmt.Errorf("%w: %d ids but %d scores", backend.ErrBadOutput, len(ids), len(scores))
		}
		for r := range rows {
			rows[r].ids = ids[r*per : (r+1)*per]
		}
	}
	return rows, nil
}

// runSession runs the session, terminating it when ctx is done.
func (m *Model) runSession(ctx context.Context, ins, outs []ort.Value) error {
	if ctx.Done() == nil {
		return runError(m.session.Run(ins, outs))
	}
	opts, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("onnx: run options: %w", err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		opts.Terminate()
	})
	err = m.session.RunWithOptions(ins, outs, opts)
	if !stop() {
		<-fired
	}
	opts.Destroy()
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return runError(err)
}

// runError classifies a run's error: the runtime refusing the request's
// input is a *backend.InputError, anything else the model's failure.
func runError(err error) error {
	switch {
	case err == nil:
		return nil
	case refusesInput(err):
		return backend.RejectInput(ErrBadInput, "%v", err)
	}
	return fmt.Errorf("onnx: run: %w", err)
}

// refusesInput reports whether a run error is ONNX Runtime refusing the
// request's input rather than the model failing. Only the message reaches
// Go through onnxruntime_go, not the status code, so it is matched on how
// ONNX Runtime begins such messages: feeds checked against the graph's
// inputs, and an index beyond a Gather's table (a token or item id out of
// an embedding's range).
func refusesInput(err error) bool {
	msg := err.Error()
	for _, p := range [...]string{
		"Invalid Feed Input Name",
		"Got invalid dimensions for input",
		"Invalid rank for input",
		"Unexpected input data type",
		"indices element out of data bounds",
	} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// perRow checks an output's shape against the batch size and returns the
// number of values per request.
func perRow(shape ort.Shape, b int64, n int) (int, error) {
	switch len(shape) {
	case 1:
		if b != 1 {
			return 0, fmt.Errorf("shape %v has no batch dimension for a batch of %d", shape, b)
		}
		return n, nil
	case 2:
		if shape[0] != b {
			return 0, fmt.Errorf("shape %v, want a leading dimension of %d", shape, b)
		}
		return int(shape[1]), nil
	}
	return 0, fmt.Errorf("shape %v, want [N] or [1, N]", shape)
}

func floats(v ort.Value) ([]float64, ort.Shape, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		d := t.GetData()
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out, t.GetShape(), nil
	case *ort.Tensor[float64]:
		return slices.Clone(t.GetData()), t.GetShape(), nil
	}
	return nil, nil, fmt.Errorf("not a float tensor")
}

// batchTensor stacks input i of every request along the leading dimension.
func batchTensor(ps []*prepared, i int, b int64) (ort.Value, error) {
	first := ps[0].inputs[i]
	shape := ort.NewShape(slices.Clone(first.Shape)...)
	shape[0] = b
	switch first.DType {
	case featurizer.Float32:
		return newTensor(ps, i, shape, func(t *featurizer.Tensor) []float32 { return t.Float32 })
	case featurizer.Float64:
		return newTensor(ps, i, shape, func(t *featurizer.Tensor) []float64 { return t.Float64 })
	case featurizer.Int32:
		return newTensor(ps, i, shape, func(t *featurizer.Tensor) []int32 { return t.Int32 })
	case featurizer.Int64:
		return newTensor(ps, i, shape, func(t *featurizer.Tensor) []int64 { return t.Int64 })
	case featurizer.Bool:
		return newTensor(ps, i, shape, func(t *featurizer.Tensor) []bool { return t.Bool })
	case featurizer.String:
		st, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, fmt.Errorf("onnx: input %q: %w", first.Name, err)
		}
		var all []string
		for _, p := range ps {
			all = append(all, p.inputs[i].String...)
		}
		if err := st.SetContents(all); err != nil {
			st.Destroy()
			return nil, fmt.Errorf("onnx: input %q: %w", first.Name, err)
		}
		return st, nil
	}
	return nil, backend.RejectInput(ErrBadInput, "input %q has dtype %s", first.Name, first.DType)
}

func newTensor[T ort.TensorData](ps []*prepared, i int, shape ort.Shape, get func(*featurizer.Tensor) []T) (ort.Value, error) {
	var data []T
	if len(ps) == 1 {
		data = slices.Clone(get(ps[0].inputs[i]))
	} else {
		for _, p := range ps {
			data = append(data, get(p.inputs[i])...)
		}
	}
	if len(data) == 0 {
		// onnxruntime_go refuses an empty slice; a zero-sized shape needs
		// an empty tensor instead.
		return ort.NewEmptyTensor[T](shape)
	}
	t, err := ort.NewTensor(shape, data)
	if err != nil {
		return nil, fmt.Errorf("onnx: input %q: %w", ps[0].inputs[i].Name, err)
	}
	return t, nil
}

// rank turns a request's output row into its top k items.
func (m *Model) rank(req *backend.Request, row *outputRow) ([]backend.Item, error) {
	var cand map[string]struct{}
	for i, s := range row.scores {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("%w: output %q has the non-finite score %v at %d", backend.ErrBadOutput, m.cfg.Outputs.Scores, s, i)
		}
	}
	best := map[string]float64{}
	add := func(id string, s float64) {
		if _, ex := req.Exclude[id]; ex {
			return
		}
		if cand != nil {
			if _, ok := cand[id]; !ok {
				return
			}
		}
		if old, ok := best[id]; !ok || s > old {
			best[id] = s
		}
	}
	switch m.mode {
	case modeAligned:
		if len(row.scores) != len(req.Candidates) {
			return nil, fmt.Errorf("%w: output %q has %d scores for %d candidates", backend.ErrBadOutput, m.cfg.Outputs.Scores, len(row.scores), len(req.Candidates))
		}
		for i, id := range req.Candidates {
			add(id, row.scores[i])
		}
	case modeCatalogue:
		if len(row.scores) != len(m.items) {
			return nil, fmt.Errorf("%w: output %q has %d scores for %d catalogue items", backend.ErrBadOutput, m.cfg.Outputs.Scores, len(row.scores), len(m.items))
		}
		if req.Candidates != nil {
			for _, id := range req.Candidates {
				if i, ok := m.itemIndex[id]; ok {
					add(id, row.scores[i])
				}
			}
		} else {
			for i, id := range m.items {
				add(id, row.scores[i])
			}
		}
	case modeIDs:
		if req.Candidates != nil {
			cand = make(map[string]struct{}, len(req.Candidates))
			for _, id := range req.Candidates {
				cand[id] = struct{}{}
			}
		}
		for i, id := range row.ids {
			add(id, row.scores[i])
		}
	}
	items := make([]backend.Item, 0, len(best))
	for id, s := range best {
		items = append(items, backend.Item{ID: id, Score: s})
	}
	slices.SortFunc(items, func(a, b backend.Item) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(items) > req.K {
		items = items[:req.K]
	}
	return items, nil
}
