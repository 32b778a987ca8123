package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
)

// MaxBatch is the most requests one batch call carries.
const MaxBatch = 256

// entry is one request of a batch call on its way through the steps.
type entry struct {
	req   *Request
	start time.Time
	arms  []bandit.Arm
	c     choice
	s     serving
	in    input
	// tried is set when the chosen arm's call was made for the entry;
	// chosenErr is how it ended.
	tried     bool
	chosenErr error
	resp      *Response
	err       error
}

// CheckBatchSize refuses a batch of n requests outside 1..MaxBatch (400
// invalid_requests, the whole call's).
func CheckBatchSize(n int) error {
	if n == 0 || n > MaxBatch {
		return fault.Field("requests", "invalid_requests", "a batch carries 1 to %d requests, got %d", MaxBatch, n)
	}
	return nil
}

// RecommendBatch serves reqs, all for one endpoint, each exactly as
// Recommend would serve it alone: its own arm choice, token, trial and
// propensity, and its own error. Only the chosen arms' model calls are
// shared: the requests that chose the same arm are scored in one call when
// its backend can stack them (backend.BatchScorer), else concurrently. A
// request whose arm failed falls back on its own. errs[i] is request i's
// error, resps[i] its response; the error is the whole call's (an unknown
// endpoint, no requests or more than MaxBatch).
func (r *Router) RecommendBatch(ctx context.Context, endpoint string, reqs []*Request) (resps []*Response, errs []error, err error) {
	if err := CheckBatchSize(len(reqs)); err != nil {
		return nil, nil, err
	}
	snap := r.reg.Snapshot()
	ep, ok := snap.Endpoints[endpoint]
	if !ok {
		return nil, nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %q does not exist", endpoint)
	}
	for _, req := range reqs {
		// The pin is the call's (one header for the batch): a bad one is
		// the whole call's error.
		if err := checkPin(snap, ep, req.Pin); err != nil {
			return nil, nil, err
		}
	}
	es := make([]entry, len(reqs))
	byArm := make(map[int][]*entry, len(ep.Arms))
	for i, req := range reqs {
		e := &es[i]
		e.req, e.start, e.s.served = req, time.Now(), -1
		req.Endpoint = endpoint
		if e.err = Validate(req); e.err != nil {
			continue
		}
		e.c, e.arms = r.choose(ctx, snap, ep, req, make([]bandit.Arm, 0, len(ep.Arms)))
		e.c.batch = true
		e.in = newInput(req)
		if e.c.chosen >= 0 {
			byArm[e.c.chosen] = append(byArm[e.c.chosen], e)
		}
	}

	// The chosen arms' calls, every arm's at once.
	var wg sync.WaitGroup
	for i, group := range byArm {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				// A panic in a backend fails its entries, never the process.
				if p := recover(); p != nil {
					r.log.Error("panic scoring a batch", "arm", ep.Arms[i], "panic", fmt.Sprint(p))
					for _, e := range group {
						if !e.tried {
							e.tried, e.chosenErr = true, fmt.Errorf("%s: panic scoring a batch: %v", ep.Arms[i], p)
						}
					}
				}
			}()
			r.tryBatch(ctx, snap, ep, i, group)
		}()
	}
	wg.Wait()

	// Then each request on its own: fallbacks, records, observers.
	for i := range es {
		e := &es[i]
		if e.err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					r.log.Error("panic serving a batch entry", "panic", fmt.Sprint(p))
					e.resp, e.err = nil, fmt.Errorf("panic serving a batch entry: %v", p)
				}
			}()
			r.finishEntry(ctx, snap, ep, e)
		}()
	}
	wg.Wait()

	resps, errs = make([]*Response, len(es)), make([]error, len(es))
	for i := range es {
		resps[i], errs[i] = es[i].resp, es[i].err
	}
	return resps, errs, nil
}

// finishEntry serves e after its chosen arm's call, falls back when that
// failed, records the prediction and tells the observers.
func (r *Router) finishEntry(ctx context.Context, snap *registry.Snapshot, ep *registry.Endpoint, e *entry) {
	chosenErr := e.chosenErr
	if e.c.chosen >= 0 && !e.tried {
		chosenErr = r.try(ctx, snap, ep, e.c.chosen, &e.in, &e.s)
	}
	if err := r.fallBack(ctx, snap, ep, e.arms, &e.c, &e.s, &e.in, chosenErr); err != nil {
		e.err = err
	} else {
		e.resp = r.record(snap, ep, e.req.UserID, &e.c, &e.s)
	}
	if len(r.obs) > 0 || e.c.shadows != 0 {
		r.notify(ctx, e.start, snap, ep, e.in, &e.c, &e.s, e.resp, e.err)
	}
}

// tryBatch makes arm i's call for the entries that chose it: one call when
// the arm's backend stacks requests and more than one entry can use it;
// otherwise each entry's call is left to finishEntry, which runs them
// concurrently. A failure of the stacked call that may be one request's
// (a refused input, a bad output) or that says the requests do not stack
// leaves the calls to finishEntry too, so each request gets its own answer.
func (r *Router) tryBatch(ctx context.Context, snap *registry.Snapshot, ep *registry.Endpoint, i int, group []*entry) {
	v := snap.Versions[ep.Arms[i]]
	bs, ok := v.Scorer.(backend.BatchScorer)
	if !ok || len(group) < 2 {
		return
	}
	// Featurize every entry; one whose features are wrong is at fault
	// alone.
	ready := make([]*entry, 0, len(group))
	reqs := make([]*backend.Request, 0, len(group))
	for _, e := range group {
		inputs, err := r.featurize(ctx, v, &e.in)
		if err != nil {
			e.tried, e.chosenErr = true, err
			continue
		}
		ready = append(ready, e)
		reqs = append(reqs, &backend.Request{Inputs: inputs, UserID: e.in.freq.UserID, Context: e.in.freq.Context,
			Candidates: e.in.cands, Exclude: e.in.excl, K: e.in.k})
	}
	if len(ready) < 2 {
		return // one request: its call is its own
	}
	start := time.Now()
	lists, took, err := r.predictBatch(ctx, v, bs, reqs)
	if err != nil && !errors.Is(err, backend.ErrNotStackable) {
		r.guard(ctx, ep, i, err, time.Since(start))
	}
	if err != nil {
		if errors.Is(err, backend.ErrNotStackable) || ctx.Err() != nil {
			return
		}
		if c := backend.Classify(err); c == backend.ClassRejected || c == backend.ClassBadOutput {
			return
		}
		// The backend failed: every request's call failed with it.
		for _, e := range ready {
			e.tried = true
			e.chosenErr = r.settle(ctx, ep, i, v, nil, took, err, &e.s)
		}
		return
	}
	r.guard(ctx, ep, i, nil, time.Since(start))
	for j, e := range ready {
		items, lerr := lists[j], backend.CheckScores(lists[j])
		if lerr != nil {
			continue // a sick answer for this request: its own call tells
		}
		e.tried = true
		e.chosenErr = r.settle(ctx, ep, i, v, filterItems(items, e.in.cands, e.in.excl, e.in.k), took, nil, &e.s)
	}
}

// predictBatch calls version v's model once for reqs under its deadline.
func (r *Router) predictBatch(ctx context.Context, v *registry.Version, bs backend.BatchScorer, reqs []*backend.Request) ([][]backend.Item, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout(v))
	defer cancel()
	cctx, pspan := r.tracer.Child(cctx, v.SpanName)
	start := time.Now()
	lists, err := bs.PredictBatch(cctx, reqs)
	if err == nil && len(lists) != len(reqs) {
		err = fmt.Errorf("%w: %d lists for %d requests", backend.ErrBadOutput, len(lists), len(reqs))
	}
	took := time.Since(start)
	endPredict(pspan, v, err)
	if err != nil {
		return nil, took, fmt.Errorf("%s: %w", v.Spec.Arm, err)
	}
	return lists, took, nil
}
