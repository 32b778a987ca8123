package embedded

import (
	"context"
	"fmt"

	"github.com/modelgate/modelgate/backend"
)

var _ backend.BatchScorer = (*Model)(nil)

// blockBytes is the size of the slice of the item matrix that PredictBatch
// scores against every request before moving on: small enough to stay in
// the core's L2 cache while each request's query and heap are used, so the
// matrix is read from memory once per call rather than once per request.
const blockBytes = 64 << 10

// PredictBatch returns, for each request in order, what Predict would
// return for it alone, from one pass over the item matrix: the catalogue
// is read block by block and each block is scored against every request
// that has no candidates, each keeping its own top-k heap and skipping its
// own excluded items. A request with candidates scores only those, as
// Predict does, inside the same call: a few rows picked by id gain nothing
// from sharing the pass.
//
// The error is the whole call's and comes with no list: an error wrapping
// ErrBadInput (naming the request) when any request is malformed, or the
// context's error if ctx is done before the pass finishes. Requests always
// stack, so ErrNotStackable is never returned. It is safe for concurrent
// use.
func (m *Model) PredictBatch(ctx context.Context, reqs []*backend.Request) ([][]backend.Item, error) {
	done := ctx.Done()
	if done != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	ss := make([]*scratch, len(reqs))
	qs := make([][]float32, len(reqs))
	defer func() {
		for _, s := range ss {
			if s != nil {
				m.put(s)
			}
		}
	}()
	// all lists the requests that share the pass, as indexes into reqs.
	all := make([]int, 0, len(reqs))
	for r, req := range reqs {
		if req.K < 1 {
			return nil, fmt.Errorf("request %d: %w", r, backend.RejectInput(ErrBadInput, "k = %d, want at least 1", req.K))
		}
		s := m.pool.Get().(*scratch)
		ss[r] = s
		q, err := m.query(req, s)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", r, err)
		}
		qs[r] = q
		s.top.reset(min(req.K, len(m.itemIDs)))
		if req.Candidates != nil {
			if m.scoreCandidates(done, q, req, s) != nil {
				return nil, ctx.Err()
			}
			continue
		}
		m.startScan(req, s)
		all = append(all, r)
	}

	n := len(m.itemIDs)
	block := max(1, min(checkEvery, blockBytes/(4*m.dim)))
	for lo := 0; lo < n && len(all) > 0; lo += block {
		hi := min(lo+block, n)
		for _, r := range all {
			// A look per block and request: a block is at most checkEvery
			// rows, and a batch of many requests still stops promptly.
			if done != nil {
				select {
				case <-done:
					return nil, ctx.Err()
				default:
				}
			}
			m.scan(qs[r], ss[r], lo, hi)
		}
	}

	out := make([][]backend.Item, len(reqs))
	for r, s := range ss {
		out[r] = s.top.items(m.itemIDs)
	}
	return out, nil
}
