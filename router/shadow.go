package router

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/shadow"
)

// ShadowSink learns what the shadow workers did; *shadow.Recorder is one.
type ShadowSink interface {
	// Done is called by a shadow worker after a shadowed prediction's
	// shadow calls; ctx is the worker's.
	Done(ctx context.Context, p *shadow.Prediction)
	// Dropped is called on the request path when a shadowed prediction's
	// calls are skipped because every worker is busy; it must not block.
	Dropped(endpoint string, arms []string)
}

// DefaultShadowWorkers is the shadow worker budget when
// Options.ShadowWorkers is 0.
const DefaultShadowWorkers = 4

// shadowJob is a shadowed prediction on its way to a shadow worker: what
// the shadows are asked (the request's inputs, already the router's own),
// what was served, and its prediction log record, written once the
// shadows answered.
type shadowJob struct {
	snap    *registry.Snapshot
	ep      *registry.Endpoint
	arms    []string
	in      input
	key     string
	expires time.Time
	served  []string
	rec     *predlog.Record
}

// drawShadows draws which of the endpoint's shadows score this request: a
// bit per shadow, each set with its share. A pinned request is QA traffic,
// never shadowed; a held-out one is, like any other the endpoint serves.
func (r *Router) drawShadows(ep *registry.Endpoint, c *choice) {
	if c.pinned || len(ep.Shadows) == 0 || r.shadowSink == nil {
		return
	}
	rng := r.rngs.get()
	for i, s := range ep.Shadows {
		if rng.Float64() < s.Share {
			c.shadows |= 1 << i
		}
	}
	r.rngs.put(rng)
}

// submitShadows hands a served, shadowed prediction to the shadow workers
// without waiting: when every worker is busy and the queue is full, its
// calls are skipped and counted as dropped. It reports whether a worker
// will write the prediction's log record.
func (r *Router) submitShadows(snap *registry.Snapshot, ep *registry.Endpoint, in input, c *choice, o *Outcome) bool {
	if c.shadows == 0 || o.Served < 0 || r.shadowSink == nil {
		return false
	}
	arms := make([]string, 0, len(ep.Shadows))
	for i, s := range ep.Shadows {
		if c.shadows&(1<<i) != 0 {
			arms = append(arms, s.Arm)
		}
	}
	tok := predtoken.Token{ID: c.id, Time: c.now, Window: ep.Policy.AttributionWindow.Std()}
	job := &shadowJob{snap: snap, ep: ep, arms: arms, in: in, key: tok.Key(), expires: tok.Expires(), rec: predictionRecord(o)}
	job.served = job.rec.Items
	select {
	case r.shadowQ <- job:
	default:
		r.dropShadows(job)
	}
	return true
}

// dropShadows counts a shadowed prediction whose calls are skipped and
// logs it so.
func (r *Router) dropShadows(job *shadowJob) {
	r.shadowSink.Dropped(job.ep.Name, job.arms)
	if r.shadowLog != nil {
		for _, arm := range job.arms {
			job.rec.Shadows = append(job.rec.Shadows, predlog.Shadow{Arm: arm, Dropped: true})
		}
		r.shadowLog.Add(job.rec)
	}
}

// RunShadows runs the shadow workers until ctx ends and returns once they
// all have: a call under way then finishes within its own deadline, and
// the predictions still queued are dropped (counted, and logged as such).
// Each shadow call has its own deadline, the shadow version's timeout, on
// the workers' context: never a request's, and not cut by ctx's end, which
// would count a shutdown as the shadow's error. Without RunShadows,
// shadowed predictions find the queue full and their calls are dropped.
func (r *Router) RunShadows(ctx context.Context) {
	calls := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range cap(r.shadowQ) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-r.shadowQ:
					r.runShadow(calls, job)
				}
			}
		}()
	}
	wg.Wait()
	for {
		select {
		case job := <-r.shadowQ:
			r.dropShadows(job)
		default:
			return
		}
	}
}

// runShadow calls each of a job's shadows in turn, then tells the sink and
// writes the prediction's log record with the shadows' answers.
func (r *Router) runShadow(ctx context.Context, job *shadowJob) {
	p := &shadow.Prediction{Endpoint: job.ep.Name, Key: job.key, Expires: job.expires, Served: job.served}
	for _, arm := range job.arms {
		p.Calls = append(p.Calls, r.callShadow(ctx, job, arm))
	}
	r.shadowSink.Done(ctx, p)
	if r.shadowLog == nil {
		return
	}
	for _, c := range p.Calls {
		ls := predlog.Shadow{Arm: c.Arm, Items: c.Items, LatencyMs: float64(c.Latency) / float64(time.Millisecond)}
		if c.Err != nil {
			ls.Error = c.Err.Error()
		}
		job.rec.Shadows = append(job.rec.Shadows, ls)
	}
	r.shadowLog.Add(job.rec)
}

// callShadow asks one shadow for the job's list: the same inputs, k,
// candidates and exclusions as the served arm, under the shadow version's
// own deadline. A panic in its backend is the call's error.
func (r *Router) callShadow(ctx context.Context, job *shadowJob, arm string) (out shadow.Call) {
	out.Arm = arm
	defer func() {
		if p := recover(); p != nil {
			out.Items, out.Err = nil, fmt.Errorf("%s: panic in a shadow call: %v", arm, p)
		}
	}()
	v := job.snap.Versions[arm]
	if v == nil || v.Scorer == nil {
		out.Err = fmt.Errorf("%s: the version is not loaded", arm)
		return out
	}
	items, took, err := r.call(ctx, v, &job.in)
	out.Latency, out.Err = max(took, 0), err
	if err == nil {
		out.Items = make([]string, len(items))
		for i, it := range items {
			out.Items[i] = it.ID
		}
	}
	return out
}

// predictionRecord is the prediction log's record of a served prediction.
func predictionRecord(o *Outcome) *predlog.Record {
	ids := make([]string, len(o.Items))
	for i, it := range o.Items {
		ids[i] = it.ID
	}
	return &predlog.Record{PredictionID: o.PredictionID, Time: o.Time.UTC(), Endpoint: o.Endpoint,
		Segment: o.Segment, Arm: o.Arms[o.Served], Propensity: o.Propensity, Fallback: o.Fallback,
		Sticky: o.Sticky, Pinned: o.Pinned, Holdout: o.Holdout, Items: ids}
}
