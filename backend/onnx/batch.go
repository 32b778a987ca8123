package onnx

import (
	"context"
	"errors"
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
