package onnx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modelgate/modelgate/backend"
)

// batcher joins concurrent Predicts into runs of at most max requests. The
// first request of a batch waits at most timeout for more; requests whose
// inputs differ in shape run in separate batches of the same round.
type batcher struct {
	m       *Model
	max     int
	timeout time.Duration
	calls   chan *call
	quit    chan struct{}
	wg      sync.WaitGroup
}

type call struct {
	ctx context.Context
	p   *prepared
	res chan result // buffered: the runner never blocks on a caller gone
}

type result struct {
	row *outputRow
	err error
}

func newBatcher(m *Model, max int, timeout time.Duration) *batcher {
	b := &batcher{m: m, max: max, timeout: timeout, calls: make(chan *call), quit: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

// do queues the request and waits for its row, or for ctx.
func (b *batcher) do(ctx context.Context, p *prepared) (*outputRow, error) {
	c := &call{ctx: ctx, p: p, res: make(chan result, 1)}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.quit:
		return nil, errClosed
	}
	select {
	case r := <-c.res:
		return r.row, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batcher) stop() {
	close(b.quit)
	b.wg.Wait()
}

func (b *batcher) loop() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var batch []*call
		select {
		case c := <-b.calls:
			batch = append(batch, c)
		case <-b.quit:
			return
		}
		timer.Reset(b.timeout)
	fill:
		for len(batch) < b.max {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			case <-timer.C:
				break fill
			case <-b.quit:
				timer.Stop()
				b.dispatch(batch)
				return
			}
		}
		timer.Stop()
		b.dispatch(batch)
	}
}

// dispatch runs the batch, one run per input shape, each in its own
// goroutine so that the next batch can fill meanwhile. Callers already
// gone are left out.
func (b *batcher) dispatch(batch []*call) {
	groups := map[string][]*call{}
	var order []string
	for _, c := range batch {
		if c.ctx.Err() != nil {
			continue
		}
		if _, ok := groups[c.p.key]; !ok {
			order = append(order, c.p.key)
		}
		groups[c.p.key] = append(groups[c.p.key], c)
	}
	for _, k := range order {
		g := groups[k]
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			ps := make([]*prepared, len(g))
			for i, c := range g {
				ps[i] = c.p
			}
			// The batch runs to completion: each caller leaves on its own
			// deadline, and a run of a few rows is short.
			rows, err := b.m.run(context.Background(), ps)
			if err != nil && len(g) > 1 && errors.Is(err, backend.ErrRejectedInput) {
				// One request's input spoiled the run: run each alone, so
				// that only its own caller is refused.
				for _, c := range g {
					rows, err := b.m.run(context.Background(), []*prepared{c.p})
					if err != nil {
						c.res <- result{err: err}
					} else {
						c.res <- result{row: &rows[0]}
					}
				}
				return
			}
			for i, c := range g {
				if err != nil {
					c.res <- result{err: err}
				} else {
					c.res <- result{row: &rows[i]}
				}
			}
		}()
	}
}

var _ backend.BatchScorer = (*Model)(nil)

// PredictBatch runs the requests as one batch, one session run with their
// inputs stacked along the leading dimension, as the batching option runs
// concurrent Predicts, and returns for each request, in order, what
// Predict would return for it alone. It does not wait for the batching
// window: the batch is the requests given.
//
// The requests stack when every input has the same shape beyond the
// leading dimension in all of them and, for more than one request, the
// model has a dynamic leading dimension on every input and output, and
// they are at most the batching option's max_batch_size when it is set;
// otherwise the error wraps backend.ErrNotStackable and the model is not
// run. The error is the whole call's, of the classes Predict's errors
// are, and comes with no list. PredictBatch is safe for concurrent use.
func (m *Model) PredictBatch(ctx context.Context, reqs []*backend.Request) ([][]backend.Item, error) {
	if len(reqs) == 0 {
		return [][]backend.Item{}, nil
	}
	ps := make([]*prepared, len(reqs))
	for r, req := range reqs {
		p, err := m.prepare(req)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", r, err)
		}
		if r > 0 && p.key != ps[0].key {
			return nil, fmt.Errorf("onnx: requests 0 and %d have inputs of other shapes: %w", r, backend.ErrNotStackable)
		}
		ps[r] = p
	}
	if len(reqs) > 1 && !m.batchRanks {
		return nil, fmt.Errorf("onnx: the model has no dynamic batch dimension: %w", backend.ErrNotStackable)
	}
	if b := m.cfg.Batching; b != nil && len(reqs) > b.MaxBatchSize {
		return nil, fmt.Errorf("onnx: %d requests, more than max_batch_size %d: %w", len(reqs), b.MaxBatchSize, backend.ErrNotStackable)
	}
	ctx, cancel := m.deadline(ctx)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := m.run(ctx, ps)
	if err != nil {
		return nil, err
	}
	out := make([][]backend.Item, len(reqs))
	for r, req := range reqs {
		if out[r], err = m.rank(req, &rows[r]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
