// Package shadow keeps what an endpoint's shadow arms did: each shadow
// call's outcome (calls, errors, latency, the overlap of its list with the
// served one), the calls skipped because the shadow workers were busy, and
// the replay of clicks: for a shadowed prediction's first click, whether
// the clicked item is in the shadow's list and in the served one.
//
// The sums are integers added up in memory and flushed to the store in
// batches, off the request path (Run): HINCRBY in Redis, so every
// replica's adds up exactly; a durable transaction in the embedded store. A
// shadowed prediction's lists are kept in the store under its prediction
// key until the end of its attribution window, so the click finds them on
// whichever replica it reaches.
package shadow

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/store"
)

// Store keeps the shadows' sums and the shadowed predictions' lists;
// *store.DB and *redisstore.Store are ones.
type Store interface {
	// AddShadowSums adds deltas to the named sums of each shadow,
	// atomically.
	AddShadowSums(ctx context.Context, deltas map[store.ShadowKey]map[string]int64) error
	// ShadowSums returns the sums of the endpoint's shadow arms, by arm.
	ShadowSums(ctx context.Context, endpoint string, arms []string) (map[string]map[string]int64, error)
	// PutShadowLists keeps predictions' lists, each until its expiry.
	PutShadowLists(ctx context.Context, lists []store.ShadowList) error
	// ShadowLists returns them, or nil when none are kept or they expired.
	ShadowLists(ctx context.Context, endpoint, prediction string, expires time.Time) ([]byte, error)
}

// The sums kept per shadow.
const (
	fCalls      = "calls"
	fErrors     = "errors"
	fDropped    = "dropped"
	fOverlapN   = "overlap_n"
	fOverlapSum = "overlap_micros" // Σ overlap × 10⁶, rounded: integers add up exactly
	fUnkept     = "unkept"         // shadowed predictions whose lists could not be kept
	fReplayN    = "replay_n"
	fReplayHits = "replay_hits"
	fServedHits = "served_hits"
	fLatency    = "lat_" // + the bucket's index
)

// latencyBounds are the upper bounds, in milliseconds, of the latency
// histogram's buckets; a last bucket holds what is above the last bound.
// Percentiles are interpolated within a bucket.
var latencyBounds = [...]float64{0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000}

// FlushInterval is how often Run writes the sums and the lists to the
// store: a click reaches another replica's replay once the lists are there.
const FlushInterval = 250 * time.Millisecond

// MaxPendingLists bounds the lists waiting for the next flush; past it, a
// prediction's lists are not kept (its click is not replayed) and the
// prediction is counted as unkept.
const MaxPendingLists = 20000

// Call is what one shadow answered for a prediction.
type Call struct {
	Arm     string
	Items   []string // its list, best first; nil when it failed
	Latency time.Duration
	Err     error
}

// Prediction is one shadowed prediction after its shadows' calls.
type Prediction struct {
	Endpoint string
	// Key is the prediction's key (predtoken.Token.Key), as feedback names
	// it; Expires the end of its attribution window.
	Key     string
	Expires time.Time
	Served  []string // the served list's item ids
	Calls   []Call
}

// lists is what is kept per shadowed prediction for the replay.
type lists struct {
	Served  []string            `json:"served"`
	Shadows map[string][]string `json:"shadows"`
}

// Recorder counts what the shadows did and keeps the lists of shadowed
// predictions. Create it with New; it is safe for concurrent use. Run must
// run for its sums and lists to reach the store.
type Recorder struct {
	db  Store
	log *slog.Logger
	// opTimeout bounds the store read of one click's replay.
	opTimeout time.Duration

	mu      sync.Mutex
	pending map[store.ShadowKey]map[string]int64 // bounded: the registry's endpoints × shadows
	// lists wait for the next flush, by endpoint NUL prediction key, at
	// most MaxPendingLists of them.
	lists map[string]store.ShadowList
}

// New returns a recorder over db. log may be nil.
func New(db Store, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Recorder{db: db, log: log, opTimeout: 2 * time.Second, pending: map[store.ShadowKey]map[string]int64{},
		lists: map[string]store.ShadowList{}}
}

func (r *Recorder) add(endpoint, arm string, f func(m map[string]int64)) {
	k := store.ShadowKey{Endpoint: endpoint, Arm: arm}
	r.mu.Lock()
	m := r.pending[k]
	if m == nil {
		m = map[string]int64{}
		r.pending[k] = m
	}
	f(m)
	r.mu.Unlock()
}

// Dropped counts a shadowed prediction whose shadow calls were skipped
// because every shadow worker was busy.
func (r *Recorder) Dropped(endpoint string, arms []string) {
	for _, arm := range arms {
		r.add(endpoint, arm, func(m map[string]int64) { m[fDropped]++ })
	}
}

// Done counts p's shadow calls and keeps its lists for the replay of its
// click (when a shadow answered): they reach the store with the next
// flush, and this process's clicks find them before that.
func (r *Recorder) Done(_ context.Context, p *Prediction) {
	kept := lists{Served: p.Served, Shadows: map[string][]string{}}
	for _, c := range p.Calls {
		overlap := -1.0
		if c.Err == nil {
			kept.Shadows[c.Arm] = c.Items
			if len(p.Served) > 0 {
				overlap = Overlap(p.Served, c.Items)
			}
		}
		r.add(p.Endpoint, c.Arm, func(m map[string]int64) {
			m[fCalls]++
			if c.Err != nil {
				m[fErrors]++
				return
			}
			m[fLatency+strconv.Itoa(bucket(c.Latency))]++
			if overlap >= 0 {
				m[fOverlapN]++
				m[fOverlapSum] += int64(math.Round(overlap * 1e6))
			}
		})
	}
	if len(kept.Shadows) == 0 || p.Key == "" {
		return
	}
	val, err := json.Marshal(kept)
	if err != nil {
		return
	}
	r.mu.Lock()
	full := len(r.lists) >= MaxPendingLists
	if !full {
		r.lists[p.Endpoint+"\x00"+p.Key] = store.ShadowList{Endpoint: p.Endpoint, Prediction: p.Key, Expires: p.Expires, Value: val}
	}
	r.mu.Unlock()
	if full {
		for arm := range kept.Shadows {
			r.add(p.Endpoint, arm, func(m map[string]int64) { m[fUnkept]++ })
		}
	}
}

// Overlap is the share of the served items that are also in the shadow's
// list.
func Overlap(served, shadow []string) float64 {
	if len(served) == 0 {
		return 0
	}
	n := 0
	for _, id := range served {
		if slices.Contains(shadow, id) {
			n++
		}
	}
	return float64(n) / float64(len(served))
}

func bucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	for i, b := range latencyBounds {
		if ms <= b {
			return i
		}
	}
	return len(latencyBounds)
}

// Clicked replays the first click of a shadowed prediction: for each
// shadow that answered it, whether item is in the shadow's list and
// whether it is in the served list. A prediction whose lists are not kept
// (its shadows failed or were skipped, or the store did not answer) is not
// replayed. Feedback calls it once per prediction, for the click that
// counted its success.
func (r *Recorder) Clicked(ctx context.Context, endpoint, key string, expires time.Time, item string) {
	r.mu.Lock()
	val := r.lists[endpoint+"\x00"+key].Value
	r.mu.Unlock()
	if val == nil {
		ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
		defer cancel()
		var err error
		if val, err = r.db.ShadowLists(ctx, endpoint, key, expires); err != nil {
			r.log.Warn("shadow lists not read: a click is not replayed", "endpoint", endpoint, "err", err)
			return
		}
	}
	if val == nil {
		return
	}
	var kept lists
	if json.Unmarshal(val, &kept) != nil {
		return
	}
	served := slices.Contains(kept.Served, item)
	for arm, ids := range kept.Shadows {
		hit := slices.Contains(ids, item)
		r.add(endpoint, arm, func(m map[string]int64) {
			m[fReplayN]++
			if hit {
				m[fReplayHits]++
			}
			if served {
				m[fServedHits]++
			}
		})
	}
}

// Flush writes the pending lists and sums to the store; on failure they
// stay pending for the next flush (lists up to MaxPendingLists).
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	lists := make([]store.ShadowList, 0, len(r.lists))
	for _, l := range r.lists {
		lists = append(lists, l)
	}
	r.mu.Unlock()
	if err := r.db.PutShadowLists(ctx, lists); err != nil {
		return err
	}
	r.mu.Lock()
	for _, l := range lists {
		delete(r.lists, l.Endpoint+"\x00"+l.Prediction)
	}
	batch := r.pending
	r.pending = map[store.ShadowKey]map[string]int64{}
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := r.db.AddShadowSums(ctx, batch); err != nil {
		r.mu.Lock()
		for k, m := range batch {
			for f, n := range m {
				if r.pending[k] == nil {
					r.pending[k] = map[string]int64{}
				}
				r.pending[k][f] += n
			}
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes the sums every FlushInterval until ctx ends, then once more
// under final(), the context that bounds a shutdown's last steps.
func (r *Recorder) Run(ctx context.Context, final func() context.Context) {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.Flush(final()); err != nil {
				r.log.Error("final flush of shadow sums failed", "err", err)
			}
			return
		case <-t.C:
			if err := r.Flush(ctx); err != nil {
				r.log.Warn("flush of shadow sums failed; kept for the next", "err", err)
			}
		}
	}
}

// Rate is a share with its count and 95% interval.
type Rate struct {
	N int64 `json:"n"`
	// Rate is hits / n; nil (null) while n is 0.
	Rate *float64 `json:"rate"`
	// CI95 is the Wilson score interval of Rate; nil while n is 0.
	CI95 *[2]float64 `json:"ci95"`
}

// Latency is a shadow's latency percentiles in milliseconds, from the
// fixed buckets of its histogram; nil (null) before its first answer.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Summary is one shadow's entry in the report.
type Summary struct {
	Arm   string  `json:"arm"`
	Share float64 `json:"share"`
	// Calls are the shadow calls made, Errors those that failed, Dropped
	// the shadowed predictions whose calls were skipped because every
	// shadow worker was busy.
	Calls   int64 `json:"calls"`
	Errors  int64 `json:"errors"`
	Dropped int64 `json:"dropped"`
	// Unkept counts answered predictions whose lists could not be kept
	// for the replay (too many waiting for the store): their clicks are
	// not replayed.
	Unkept int64 `json:"unkept"`
	// LatencyMs holds the answered calls' latency percentiles.
	LatencyMs *Latency `json:"latency_ms"`
	// OverlapAtK is the mean share of the served list's items that the
	// shadow also put in its top k (the request's k); nil before a call
	// answered next to a non-empty served list.
	OverlapAtK *float64 `json:"overlap_at_k"`
	// Replay: among shadowed predictions that got a click, the share whose
	// (first) clicked item is in the shadow's top k; ServedReplay the same
	// predictions' share whose clicked item is in the served list.
	Replay       Rate `json:"replay"`
	ServedReplay Rate `json:"served_replay"`
}

// Summaries returns the report's entries of the endpoint's shadows: the
// store's sums plus what this process has not flushed yet.
func (r *Recorder) Summaries(ctx context.Context, endpoint string, shadows []registry.Shadow) ([]Summary, error) {
	out := make([]Summary, 0, len(shadows))
	if len(shadows) == 0 {
		return out, nil
	}
	arms := make([]string, len(shadows))
	for i, s := range shadows {
		arms[i] = s.Arm
	}
	stored, err := r.db.ShadowSums(ctx, endpoint, arms)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	for _, arm := range arms {
		for f, n := range r.pending[store.ShadowKey{Endpoint: endpoint, Arm: arm}] {
			if stored[arm] == nil {
				stored[arm] = map[string]int64{}
			}
			stored[arm][f] += n
		}
	}
	r.mu.Unlock()
	for _, s := range shadows {
		out = append(out, summarize(s, stored[s.Arm]))
	}
	return out, nil
}

func summarize(s registry.Shadow, m map[string]int64) Summary {
	sum := Summary{Arm: s.Arm, Share: s.Share, Calls: m[fCalls], Errors: m[fErrors], Dropped: m[fDropped], Unkept: m[fUnkept],
		Replay: rate(m[fReplayHits], m[fReplayN]), ServedReplay: rate(m[fServedHits], m[fReplayN])}
	if n := m[fOverlapN]; n > 0 {
		o := float64(m[fOverlapSum]) / 1e6 / float64(n)
		sum.OverlapAtK = &o
	}
	var counts [len(latencyBounds) + 1]int64
	for i := range counts {
		counts[i] = m[fLatency+strconv.Itoa(i)]
	}
	if p50, ok := percentile(counts[:], 0.5); ok {
		p99, _ := percentile(counts[:], 0.99)
		sum.LatencyMs = &Latency{P50: p50, P99: p99}
	}
	return sum
}

// percentile interpolates the q-quantile of a histogram over
// latencyBounds linearly within its bucket (the last, open bucket reports
// its lower bound); false when it is empty.
func percentile(counts []int64, q float64) (float64, bool) {
	var n int64
	for _, c := range counts {
		n += c
	}
	if n == 0 {
		return 0, false
	}
	rank := q * float64(n)
	var below int64
	for i, c := range counts {
		if c > 0 && float64(below+c) >= rank {
			lo := 0.0
			if i > 0 {
				lo = latencyBounds[i-1]
			}
			if i == len(latencyBounds) {
				return lo, true
			}
			return lo + (latencyBounds[i]-lo)*(rank-float64(below))/float64(c), true
		}
		below += c
	}
	return latencyBounds[len(latencyBounds)-1], true
}

// rate is hits out of n with its Wilson score 95% interval.
func rate(hits, n int64) Rate {
	out := Rate{N: n}
	if n <= 0 {
		return out
	}
	p := float64(hits) / float64(n)
	const z = 1.959963984540054
	nf := float64(n)
	den := 1 + z*z/nf
	mid := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	out.Rate = &p
	out.CI95 = &[2]float64{math.Max(0, mid-half), math.Min(1, mid+half)}
	return out
}
