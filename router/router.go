// Package router serves one recommend call: it finds the endpoint, names the
// segment, lets the endpoint's policy choose an arm, turns the request into
// the arm's inputs, calls its backend under a deadline, falls back when that
// fails, counts the trial and signs the prediction token.
package router

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/telemetry"
)

// Limits of a recommend call.
const (
	DefaultK              = 10
	MaxK                  = 1000
	MaxListLen            = 10000 // candidates, exclude
	MaxUserIDLen          = 1024
	MaxContextKeys        = 64
	MaxContextKeyLen      = 128
	MaxContextValueLen    = 256
	DefaultBackendTimeout = time.Second
)

// Snapshotter gives the current registry view.
type Snapshotter interface {
	Snapshot() *registry.Snapshot
}

// Request is a recommend call after decoding. K = 0 means DefaultK.
type Request struct {
	Endpoint   string
	UserID     string
	Context    map[string]string
	Features   map[string]any
	Candidates []string
	Exclude    []string
	K          int
}

// Response is one served prediction.
type Response struct {
	PredictionID string         `json:"prediction_id"`
	Endpoint     string         `json:"endpoint"`
	Arm          string         `json:"arm"`
	Model        string         `json:"model"`
	Version      string         `json:"version"`
	Segment      string         `json:"segment"`
	Items        []backend.Item `json:"items"`
	Fallback     bool           `json:"fallback"`
}

// Router is safe for concurrent use. Create it with New.
type Router struct {
	reg     Snapshotter
	table   *counters.Table
	signer  *predtoken.Signer
	log     *slog.Logger
	now     func() time.Time
	rngs    rngPool
	segs    sync.Map // segKey -> *segState
	errs    counters.Errors
	sticky  stickyStore
	guards  sync.Map // guardKey -> *armGuard
	predlog PredictionLog
	offp    *offpolicy.Table
	// refreshQ holds segments whose shares Run should recompute.
	refreshQ chan segKey
	// estimates counts Monte Carlo share estimates (tests check that the
	// request path makes none).
	estimates atomic.Int64
	// draws is the Monte Carlo size of a share estimate (shareDraws; tests
	// may lower it: the logged propensities are exact whatever it is).
	draws int
	// syncRefresh makes enqueue refresh at once, in the caller (see
	// Options.SyncRefresh).
	syncRefresh bool
	onTrip      func(endpoint, arm, reason string)
	trips       chan trip // to RunGuardrails
	tel         *telemetry.Telemetry
	met         *telemetry.Metrics
}

// PredictionLog receives a record of every served prediction; Add must not
// block.
type PredictionLog interface {
	Add(*predlog.Record)
}

// Options are a Router's optional collaborators. The zero value is usable.
type Options struct {
	// PredictionLog, when set, gets every served prediction.
	PredictionLog PredictionLog
	// OnGuardrail is called when an arm breaches its endpoint's
	// guardrails; it is expected to pause the arm with reason. It is called
	// from RunGuardrails, one pause at a time, never on the request path.
	OnGuardrail func(endpoint, arm, reason string)
	// OffPolicy, when set, gets the sums of every served prediction.
	OffPolicy *offpolicy.Table
	// Seed, when non-zero, makes the router's random draws one seeded
	// sequence, taken in turn by every request (tests, reproducible runs:
	// it serialises the draws); else each P has its own source seeded from
	// crypto/rand.
	Seed uint64
	// SyncRefresh recomputes a segment's traffic shares in the request
	// that finds them stale (by evidence, never by age), instead of leaving
	// it to Run, and keeps reports (PolicyShares) off the shares cache and
	// the seeded source: with Seed, the router's choices then depend on
	// nothing but the requests' order (tests and reproducible runs of the
	// real server). It puts a Monte Carlo estimate on the request path:
	// never for serving.
	SyncRefresh bool
	// Telemetry, when set, gets the recommend metrics and, under a
	// recording server span, the choose, featurize and backend spans.
	Telemetry *telemetry.Telemetry
}

// Errors returns the router's arm failure counts.
func (r *Router) Errors() *counters.Errors { return &r.errs }

// Available reports whether a version can serve now: loaded, and healthy
// when its backend reports health.
func Available(v *registry.Version) bool {
	if v == nil || v.Scorer == nil {
		return false
	}
	if h, ok := v.Scorer.(backend.Health); ok {
		return h.Healthy()
	}
	return true
}

// New returns a router over the registry reg, counting into table and
// signing with signer. log may be nil.
func New(reg Snapshotter, table *counters.Table, signer *predtoken.Signer, log *slog.Logger, opt Options) *Router {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Router{reg: reg, table: table, signer: signer, log: log, now: time.Now,
		predlog: opt.PredictionLog, offp: opt.OffPolicy, onTrip: opt.OnGuardrail,
		refreshQ: make(chan segKey, refreshQueue), trips: make(chan trip, tripQueueLen), draws: shareDraws,
		syncRefresh: opt.SyncRefresh}
	if opt.Telemetry != nil {
		r.tel, r.met = opt.Telemetry, opt.Telemetry.Metrics
	}
	if opt.Seed != 0 {
		r.rngs.seeded = rand.New(rand.NewPCG(opt.Seed, 1))
	}
	r.rngs.pool.New = func() any {
		var seed [16]byte
		_, _ = crand.Read(seed[:])
		return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	return r
}

// rngPool hands out random sources: one per P from a pool, or, seeded,
// one source for everyone in turn, so that a seeded router draws the same
// sequence whatever the goroutine scheduling and the garbage collector do
// (a pool may drop its sources at any GC, and which one a goroutine gets
// is not defined).
type rngPool struct {
	pool   sync.Pool
	mu     sync.Mutex
	seeded *rand.Rand
}

func (p *rngPool) get() *rand.Rand {
	if p.seeded != nil {
		p.mu.Lock()
		return p.seeded
	}
	return p.pool.Get().(*rand.Rand)
}

func (p *rngPool) put(r *rand.Rand) {
	if p.seeded != nil {
		p.mu.Unlock()
		return
	}
	p.pool.Put(r)
}

type segKey struct{ endpoint, segment string }

// segState caches the policy's traffic shares of one segment: the
// propensities written into tokens. They are refreshed off the request path.
type segState struct {
	shares     atomic.Pointer[shareSet]
	refreshing atomic.Bool
}

type shareSet struct {
	at     time.Time
	arms   []string
	posts  []bandit.Arm // the posteriors the shares were computed from
	shares []float64
}

// Propensity caching: a segment's shares are recomputed off the request
// path when an arm's evidence moved by more than asyncDrift (relative, see
// shareSet.drift), or at all after shareTTL; shareDraws is the Monte Carlo
// size of each estimate (standard error ≤ 0.005).
const (
	shareTTL   = time.Second
	asyncDrift = 0.01
	shareDraws = 10000
)

// Segment returns the segment name of a context for the given segment_by
// keys: "all" with no keys, else "k1=v1,k2=v2" in segment_by order (a
// missing key has an empty value). In values, '%', ',', '=' and NUL are
// written %25, %2C, %3D and %00, so distinct contexts never share a
// segment and no segment holds a NUL.
func Segment(segmentBy []string, ctx map[string]string) string {
	if len(segmentBy) == 0 {
		return counters.AllSegment
	}
	var b strings.Builder
	for i, k := range segmentBy {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		segmentEscaper.WriteString(&b, ctx[k])
	}
	return b.String()
}

var segmentEscaper = strings.NewReplacer("%", "%25", ",", "%2C", "=", "%3D", "\x00", "%00")

// BanditPolicy converts an endpoint policy for package bandit.
func BanditPolicy(p *registry.Policy) bandit.Policy {
	bp := bandit.Policy{Prior: bandit.Prior{Alpha: p.Prior.Alpha, Beta: p.Prior.Beta}, MinShare: p.MinShare}
	if p.Type == "uniform" {
		bp.Kind = bandit.Uniform
	}
	return bp
}

// Validate checks a request's own fields (not the endpoint's feature spec).
func Validate(req *Request) error {
	if req.UserID == "" {
		return fault.Field("user_id", "missing_field", "required: a non-empty string")
	}
	if len(req.UserID) > MaxUserIDLen {
		return fault.Field("user_id", "invalid_value", "longer than %d bytes", MaxUserIDLen)
	}
	if len(req.Context) > MaxContextKeys {
		return fault.Field("context", "invalid_context", "at most %d context keys", MaxContextKeys)
	}
	for k, v := range req.Context {
		if len(k) > MaxContextKeyLen || len(v) > MaxContextValueLen {
			return fault.Field("context."+truncate(k, MaxContextKeyLen), "invalid_context",
				"keys are at most %d bytes and values at most %d", MaxContextKeyLen, MaxContextValueLen)
		}
	}
	if err := CheckK(req.K, true); err != nil {
		return err
	}
	if len(req.Candidates) > MaxListLen {
		return fault.Field("candidates", "too_many_items", "at most %d candidates", MaxListLen)
	}
	if len(req.Exclude) > MaxListLen {
		return fault.Field("exclude", "too_many_items", "at most %d excluded items", MaxListLen)
	}
	return nil
}

// CheckK is the one check of a requested number of items k: it returns the
// invalid_k fault unless k is 1 to MaxK. With zeroIsDefault, 0 is accepted
// too and asks for DefaultK, and the message says so: a Request's K, and
// gRPC's k, where an absent k cannot be told from 0. Over HTTP an explicit
// k of 0 is refused.
func CheckK(k int, zeroIsDefault bool) error {
	switch {
	case k >= 1 && k <= MaxK, zeroIsDefault && k == 0:
		return nil
	case zeroIsDefault:
		return fault.Field("k", "invalid_k", "must be between 1 and %d (0 means the default, %d)", MaxK, DefaultK)
	default:
		return fault.Field("k", "invalid_k", "must be between 1 and %d", MaxK)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Recommend serves one request.
func (r *Router) Recommend(ctx context.Context, req *Request) (_ *Response, err error) {
	start := time.Now()
	if err := Validate(req); err != nil {
		return nil, err
	}
	k := req.K
	if k == 0 {
		k = DefaultK
	}
	snap := r.reg.Snapshot()
	ep, ok := snap.Endpoints[req.Endpoint]
	if !ok {
		return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %q does not exist", req.Endpoint)
	}
	segment := r.segmentOf(ep, req.Context)
	now := r.now()
	_, chooseSpan := r.tel.Child(ctx, "choose")

	// Gather the arms' posteriors; paused and unavailable arms are inactive.
	var armBuf [16]bandit.Arm
	arms := armBuf[:0]
	for _, name := range ep.Arms {
		arms = append(arms, r.armInput(snap, ep, segment, name, now))
	}

	chosen, prop, sticky := -1, 0.0, false
	var shares []float64 // the policy's probability of each arm for this request
	ttl := ep.Policy.StickyTTL()
	if ttl > 0 {
		if arm, p, ok := r.sticky.get(ep.Name, req.UserID, now); ok {
			for i, name := range ep.Arms {
				if name == arm && arms[i].Active {
					chosen, prop, sticky = i, p, true
					shares = make([]float64, len(arms)) // the assignment holds: certain
					shares[i] = 1
				}
			}
		}
	}
	if chosen < 0 {
		// The arm is drawn from the segment's traffic shares: Thompson
		// sampling under the posterior as of their last refresh (batched
		// updates), so the logged propensity is exactly the probability
		// of this choice.
		shares = r.shares(ep, segment, arms, now)
		rng := r.rngs.get()
		chosen = bandit.Pick(rng, shares)
		r.rngs.put(rng)
		if chosen >= 0 {
			prop = shares[chosen]
		}
	}
	endChoose(chooseSpan, ep, segment, chosen, prop)

	var excl map[string]struct{}
	if len(req.Exclude) > 0 {
		excl = make(map[string]struct{}, len(req.Exclude))
		for _, id := range req.Exclude {
			excl[id] = struct{}{}
		}
	}
	cands := req.Candidates
	if cands != nil && excl != nil {
		kept := make([]string, 0, len(cands))
		for _, id := range cands {
			if _, x := excl[id]; !x {
				kept = append(kept, id)
			}
		}
		cands = kept
	}
	freq := featurizer.Request{UserID: req.UserID, Context: req.Context, Features: req.Features, Candidates: cands}

	served, fellBack := -1, false
	var items []backend.Item
	var lastErr, rejected error // rejected: the first refusal of the input, by rejectedBy
	var rejectedBy string
	if r.met != nil || r.tel != nil {
		defer func() { r.observe(ctx, start, ep, segment, chosen, served, fellBack, err) }()
	}
	try := func(i int) error {
		v := snap.Versions[ep.Arms[i]]
		start := time.Now()
		it, err := r.call(ctx, v, &freq, cands, excl, k)
		class := "" // the arm's failure class; "" when it served or the request is at fault
		if err != nil && fault.As(err) == nil && ctx.Err() == nil {
			class = backend.Classify(err)
		}
		// A refused input is the request's fault, not the arm's: it never
		// feeds the guardrail, neither as a failure nor as a served call.
		if fault.As(err) == nil && ctx.Err() == nil && class != backend.ClassRejected {
			r.guardrail(ep, ep.Arms[i], err != nil, time.Since(start))
		}
		if err != nil {
			if class != "" {
				r.errs.Add(counters.ErrorKey{Endpoint: ep.Name, Arm: ep.Arms[i], Class: class})
				r.met.ArmError(ctx, ep.Name, ep.Arms[i], class)
			}
			if class == backend.ClassRejected && rejected == nil {
				rejected, rejectedBy = err, ep.Arms[i]
			}
			return err
		}
		items, served = it, i
		return nil
	}
	if chosen >= 0 {
		lastErr = try(chosen)
		if lastErr != nil && fault.As(lastErr) != nil {
			return nil, lastErr // the request itself is at fault (e.g. a missing feature)
		}
	}
	if served < 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("recommend: %w", ctx.Err()) // the client went away: no fallback for nobody
	}
	if served < 0 {
		if fb := fallbackArm(ep, arms, chosen); fb >= 0 {
			if err := try(fb); err == nil {
				fellBack = true
				// The arm that served was not the policy's choice: log the
				// probability the policy gives it, as for any other choice.
				if shares == nil || sticky {
					shares = r.shares(ep, segment, arms, now)
				}
				prop = shares[fb]
			} else {
				if fault.As(err) != nil {
					return nil, err
				}
				lastErr = err
			}
		}
	}
	if served < 0 && rejected != nil {
		return nil, rejectedInput(rejectedBy, rejected) // no trial: nobody served
	}
	if served < 0 {
		msg := "no healthy arm could serve and no fallback is available"
		if lastErr != nil {
			msg = fmt.Sprintf("%s (last error: %v)", msg, lastErr)
		}
		return nil, fault.New(fault.Unavailable, "no_healthy_arm", "%s", msg)
	}
	if chosen >= 0 && lastErr != nil {
		r.log.WarnContext(ctx, "arm failed", "endpoint", ep.Name, "arm", ep.Arms[chosen], "served", ep.Arms[served], "err", lastErr)
	}
	armName := ep.Arms[served]
	// Only a served request makes state: a new segment is admitted here
	// (or, when others took the last places meanwhile, overflows).
	if !r.table.Admit(ep.Name, segment, ep.Policy.SegmentCap()) {
		segment = counters.OtherSegment
	}
	key := counters.Key{Endpoint: ep.Name, Segment: segment, Arm: armName}
	cell := r.table.Cell(key)
	if ep.Policy.TrialsOn != "impression" {
		r.met.Trial(ctx, ep.Name, armName, 1)
		cell.AddTrial()
		r.table.AddToAggregate(key, 1, 0)
	}
	r.noteServed(ep.Name, segment)
	if ttl > 0 && !sticky && !fellBack {
		r.sticky.put(ep.Name, req.UserID, armName, prop, now.Add(ttl))
	}
	spec := &snap.Versions[armName].Spec
	model, version := spec.Name, spec.Version
	tok := predtoken.Token{Endpoint: ep.Name, Arm: armName, Segment: segment, Time: now,
		Propensity: prop, Window: ep.Policy.Window(), Items: len(items),
		OnImpression: ep.Policy.TrialsOn == "impression", ID: predtoken.NewID()}
	resp := &Response{PredictionID: r.signer.Sign(&tok), Endpoint: ep.Name, Arm: armName, Model: model,
		Version: version, Segment: segment, Items: items, Fallback: fellBack}
	if r.offp != nil {
		r.offp.Served(ep.Name, segment, now, ep.Arms, shares, served, prop)
	}
	if r.predlog != nil {
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = it.ID
		}
		r.predlog.Add(&predlog.Record{PredictionID: resp.PredictionID, Time: now.UTC(), Endpoint: ep.Name,
			Segment: segment, Arm: armName, Propensity: prop, Fallback: fellBack, Sticky: sticky, Items: ids})
	}
	return resp, nil
}

// PolicyShares returns the probability that the endpoint's policy picks
// each arm now in segment ("" or "all": across segments, from the
// endpoint-wide counts), from the same posteriors Recommend uses (borrowed
// segment priors, discounted counts) with 10⁴ draws; nil for an unknown
// endpoint.
func (r *Router) PolicyShares(endpoint, segment string) []float64 {
	snap := r.reg.Snapshot()
	ep, ok := snap.Endpoints[endpoint]
	if !ok {
		return nil
	}
	segment = viewSegment(ep, segment)
	now := r.now()
	arms := make([]bandit.Arm, len(ep.Arms))
	for i, name := range ep.Arms {
		arms[i] = r.armInput(snap, ep, segment, name, now)
	}
	pol := BanditPolicy(&ep.Policy)
	if sh, ok := exactShares(pol, arms); ok {
		return sh
	}
	if r.syncRefresh {
		// Reproducible mode: the request path alone refreshes the cache
		// and draws from the seeded source; a report must not move either
		// at a moment that depends on scheduling.
		out := make([]float64, len(arms))
		pol.Shares(bandit.SeededBy(endpoint+"\x00"+segment, pol.Prior, pol.MinShare, arms), arms, r.draws, out)
		return out
	}
	set := r.computeShares(pol, ep.Arms, arms, now)
	// What was just computed is what the router should draw from next.
	if segment == counters.AggregateSegment || r.table.Known(endpoint, segment) {
		r.seg(endpoint, segment).shares.Store(set)
	}
	return set.shares
}

// CachedShares returns the traffic shares the router last computed for a
// segment of endpoint (off the request path), or nil when it has none or
// the endpoint's arms changed since. It computes nothing.
func (r *Router) CachedShares(endpoint, segment string) []float64 {
	ep, ok := r.reg.Snapshot().Endpoints[endpoint]
	if !ok {
		return nil
	}
	v, ok := r.segs.Load(segKey{endpoint, viewSegment(ep, segment)})
	if !ok {
		return nil
	}
	cur := v.(*segState).shares.Load()
	if cur == nil || !slices.Equal(cur.arms, ep.Arms) {
		return nil
	}
	return cur.shares
}

// viewSegment is the segment whose counts a report of segment reads: for
// "" or "all" of a segmented endpoint, the endpoint-wide AggregateSegment.
func viewSegment(ep *registry.Endpoint, segment string) string {
	if segment == "" {
		segment = counters.AllSegment
	}
	if len(ep.Policy.SegmentBy) > 0 && segment == counters.AllSegment {
		return counters.AggregateSegment
	}
	return segment
}

// armInput is one arm's bandit input in segment (AggregateSegment for the
// endpoint-wide view): its counts there and, for a segment of a segmented
// endpoint, the endpoint-wide counts it borrows its prior from. It creates
// no cell: a segment that has none starts from the prior. Paused and
// unavailable arms are inactive.
func (r *Router) armInput(snap *registry.Snapshot, ep *registry.Endpoint, segment, name string, now time.Time) bandit.Arm {
	c := r.table.Lookup(counters.Key{Endpoint: ep.Name, Segment: segment, Arm: name})
	var agg *counters.Cell
	if len(ep.Policy.SegmentBy) > 0 && segment != counters.AggregateSegment {
		agg = r.table.Lookup(counters.Key{Endpoint: ep.Name, Segment: counters.AggregateSegment, Arm: name})
	}
	a := r.posterior(ep, c, agg, now)
	a.Active = ep.ArmStates[name] != registry.Paused && Available(snap.Versions[name])
	return a
}

// segmentOf names the segment a request is served in: its context's
// segment when the endpoint knows it or has room for one more, else the
// overflow segment. It creates nothing (see Recommend's admission).
func (r *Router) segmentOf(ep *registry.Endpoint, ctx map[string]string) string {
	seg := Segment(ep.Policy.SegmentBy, ctx)
	if !counters.Counted(seg) || r.table.Known(ep.Name, seg) || r.table.SegmentCount(ep.Name) < ep.Policy.SegmentCap() {
		return seg
	}
	return counters.OtherSegment
}

// posterior is an arm's bandit input in one segment: its counts (discounted
// for a discounted-thompson policy), plus, for a segmented endpoint with a
// segment_prior_weight m, m pseudo-counts split by the endpoint-wide
// posterior mean, so a segment with little data starts from what the
// endpoint knows.
func (r *Router) posterior(ep *registry.Endpoint, c, agg *counters.Cell, now time.Time) bandit.Arm {
	var a bandit.Arm
	h := ep.Policy.Discounted()
	switch {
	case c == nil: // no evidence yet: the prior alone
	case h > 0:
		t, s := c.Discounted(now, h)
		a.PseudoSuccesses, a.PseudoFailures = s, max(0, t-s)
	default:
		a.Trials, a.Successes = c.Counts()
	}
	if m := ep.Policy.SegmentPriorWeight; m > 0 && agg != nil {
		var t, s float64
		if h > 0 {
			t, s = agg.Discounted(now, h)
		} else if agg != nil {
			ti, si := agg.Counts()
			t, s = float64(ti), float64(min(si, ti))
		}
		pr := ep.Policy.Prior
		mean := (pr.Alpha + s) / (pr.Alpha + pr.Beta + t)
		a.PseudoSuccesses += m * mean
		a.PseudoFailures += m * (1 - mean)
	}
	return a
}

// fallbackArm is the endpoint's fallback when it is active and not the arm
// that failed, else the active arm with the highest posterior mean.
func fallbackArm(ep *registry.Endpoint, arms []bandit.Arm, failed int) int {
	for i, name := range ep.Arms {
		if name == ep.Fallback && i != failed && arms[i].Active {
			return i
		}
	}
	best, bestMean := -1, -1.0
	for i, a := range arms {
		if i == failed || !a.Active {
			continue
		}
		al, be := bandit.Prior{Alpha: ep.Policy.Prior.Alpha, Beta: ep.Policy.Prior.Beta}.Posterior(a)
		m := al / (al + be)
		if m > bestMean {
			best, bestMean = i, m
		}
	}
	return best
}

// call featurizes for version v and calls its backend under its deadline,
// then enforces candidates, exclude and k whatever the model returned.
func (r *Router) call(ctx context.Context, v *registry.Version, freq *featurizer.Request, cands []string, excl map[string]struct{}, k int) ([]backend.Item, error) {
	_, fspan := r.tel.Child(ctx, "featurize")
	inputs, err := v.Plan.Build(freq)
	endFeaturize(fspan, v, err)
	if err != nil {
		var fe *featurizer.FieldError
		if errors.As(err, &fe) {
			return nil, fault.Field(fe.Field, "invalid_feature", "%s", fe.Message)
		}
		return nil, fault.New(fault.Invalid, "invalid_feature", "%v", err)
	}
	timeout := DefaultBackendTimeout
	if v.Spec.Backend.TimeoutMS > 0 {
		timeout = time.Duration(v.Spec.Backend.TimeoutMS) * time.Millisecond
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cctx, pspan := r.tel.Child(cctx, predictSpanName(v.Spec.Backend.Type))
	start := time.Now()
	items, err := v.Scorer.Predict(cctx, &backend.Request{Inputs: inputs, Candidates: cands, Exclude: excl, K: k})
	if err == nil {
		// Whatever the backend let through, a non-finite score is a sick
		// model's output, and could not be encoded as JSON.
		err = backend.CheckScores(items)
	}
	r.endPredict(cctx, pspan, v, time.Since(start), err)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.Spec.Arm, err)
	}
	return filterItems(items, cands, excl, k), nil
}

// MaxRejectionLen bounds the backend's message a model_rejected_input error
// shows the client, in bytes (cut at a character boundary).
const MaxRejectionLen = 200

// rejectedInput is the client's error when no arm accepted the request's
// input and at least one refused it: err is the first refusal, by arm.
func rejectedInput(arm string, err error) error {
	msg := err.Error()
	var ie *backend.InputError
	if errors.As(err, &ie) {
		msg = ie.Msg
	}
	if len(msg) > MaxRejectionLen {
		cut := MaxRejectionLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return fault.New(fault.Invalid, "model_rejected_input", "model %s rejected the request's input: %s", arm, msg)
}

// linearDedup is how many kept items filterItems checks for duplicates by
// a linear scan before it builds a set: for the usual k that saves a map
// per request.
const linearDedup = 16

// filterItems drops items outside cands (when given), excluded and
// duplicate items, and keeps at most k.
func filterItems(items []backend.Item, cands []string, excl map[string]struct{}, k int) []backend.Item {
	var allowed map[string]struct{}
	if cands != nil {
		allowed = make(map[string]struct{}, len(cands))
		for _, id := range cands {
			allowed[id] = struct{}{}
		}
	}
	// Up to linearDedup items kept, duplicates are found by scanning out;
	// past that, a set of the kept ids takes over.
	var seen map[string]struct{}
	out := items[:0]
	for _, it := range items {
		if len(out) == k {
			break
		}
		if _, x := excl[it.ID]; x {
			continue
		}
		if allowed != nil {
			if _, ok := allowed[it.ID]; !ok {
				continue
			}
		}
		if seen != nil {
			if _, dup := seen[it.ID]; dup {
				continue
			}
			seen[it.ID] = struct{}{}
		} else if slices.ContainsFunc(out, func(o backend.Item) bool { return o.ID == it.ID }) {
			continue
		}
		out = append(out, it)
		if seen == nil && len(out) > linearDedup {
			seen = make(map[string]struct{}, len(items))
			for _, o := range out {
				seen[o.ID] = struct{}{}
			}
		}
	}
	if out == nil {
		out = []backend.Item{}
	}
	return out
}

// shares is the probability that the policy picks each arm in this segment
// now, after the floor and pauses; the slice is shared and read-only.
// Uniform choices, a single active arm and arms with identical posteriors
// (a new segment without borrowed prior) are exact. Otherwise it is the
// segment's cached Monte Carlo estimate (shareDraws joint posterior draws,
// standard error ≤ 0.005), which Run's refresher keeps close to the
// posteriors off the request path (see the drift constants); a segment
// without one yet — new, or whose active arms just changed — is given the
// endpoint-wide shares until its own are computed. Nothing here computes a
// Monte Carlo estimate: a new segment costs what a known one does.
func (r *Router) shares(ep *registry.Endpoint, segment string, arms []bandit.Arm, now time.Time) []float64 {
	pol := BanditPolicy(&ep.Policy)
	if sh, ok := exactShares(pol, arms); ok {
		return sh
	}
	if r.table.Known(ep.Name, segment) {
		st := r.seg(ep.Name, segment)
		if cur := st.shares.Load(); cur != nil && cur.sameArms(ep.Arms, arms) {
			if d := cur.drift(arms); d > asyncDrift || (d > 0 && r.expired(cur, now)) {
				r.enqueue(segKey{ep.Name, segment}, st)
			}
			return cur.shares
		}
		r.enqueue(segKey{ep.Name, segment}, st)
	}
	// No shares of its own yet: start from the endpoint-wide ones.
	if len(ep.Policy.SegmentBy) > 0 && segment != counters.AggregateSegment {
		k := segKey{ep.Name, counters.AggregateSegment}
		st := r.seg(k.endpoint, k.segment)
		cur := st.shares.Load()
		if cur == nil || r.expired(cur, now) || !cur.sameArms(ep.Arms, arms) {
			r.enqueue(k, st)
		}
		if cur != nil && cur.sameArms(ep.Arms, arms) {
			return cur.shares
		}
	}
	return uniformShares(arms)
}

// exactShares returns the policy's shares when they are known without
// sampling: a uniform policy, at most one active arm, or active arms whose
// posteriors are all equal (each then wins with the same probability).
func exactShares(pol bandit.Policy, arms []bandit.Arm) ([]float64, bool) {
	active := 0
	for _, a := range arms {
		if a.Active {
			active++
		}
	}
	if active <= 1 || pol.Kind == bandit.Uniform || samePosteriors(arms) {
		return uniformShares(arms), true
	}
	return nil, false
}

// expired reports whether shares are older than shareTTL. A reproducible
// router (Options.SyncRefresh) goes by the evidence alone, never the clock.
func (r *Router) expired(s *shareSet, now time.Time) bool {
	return !r.syncRefresh && now.Sub(s.at) > shareTTL
}

// uniformShares gives each of the active arms an equal share.
func uniformShares(arms []bandit.Arm) []float64 {
	active := 0
	for _, a := range arms {
		if a.Active {
			active++
		}
	}
	out := make([]float64, len(arms))
	for i, a := range arms {
		if a.Active {
			out[i] = 1 / float64(active)
		}
	}
	return out
}

// samePosteriors reports whether every active arm has the same posterior,
// so that Thompson sampling (with or without a floor) picks each with
// equal probability.
func samePosteriors(arms []bandit.Arm) bool {
	first := -1
	for i, a := range arms {
		if !a.Active {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		b := arms[first]
		if a.Trials != b.Trials || a.Successes != b.Successes || a.PseudoSuccesses != b.PseudoSuccesses || a.PseudoFailures != b.PseudoFailures {
			return false
		}
	}
	return true
}

// noteServed makes sure a segment that just served has cached shares on
// their way, so its next request need not borrow the endpoint's.
func (r *Router) noteServed(endpoint, segment string) {
	st := r.seg(endpoint, segment)
	if st.shares.Load() == nil {
		r.enqueue(segKey{endpoint, segment}, st)
	}
}

// Share refreshing: a bounded queue of segments to recompute, drained by
// Run. A segment is queued at most once at a time; when the queue is full
// the request goes on with the cached shares and a later one queues it.
// The refresher spends at most about refreshDuty of one core.
const (
	refreshQueue = 4096
	refreshDuty  = 0.25
)

func (r *Router) enqueue(k segKey, st *segState) {
	if !st.refreshing.CompareAndSwap(false, true) {
		return
	}
	if r.syncRefresh {
		r.refresh(k)
		return
	}
	select {
	case r.refreshQ <- k:
	default:
		st.refreshing.Store(false)
	}
}

// Run recomputes the queued segments' traffic shares until ctx ends, then
// returns. It must run for the router's propensities to follow the
// posteriors; it is the only goroutine the router needs.
func (r *Router) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-r.refreshQ:
			start := time.Now()
			r.refresh(k)
			// Pace to refreshDuty so a flood of segments cannot take the
			// cores the requests need.
			if pause := time.Duration(float64(time.Since(start)) * (1/refreshDuty - 1)); pause > 0 {
				t := time.NewTimer(min(pause, 100*time.Millisecond))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
	}
}

// drainRefresh recomputes every queued segment now, unpaced: what Run does,
// in the caller's goroutine (tests use it to take scheduling out of the
// propensities they check).
func (r *Router) drainRefresh() {
	for {
		select {
		case k := <-r.refreshQ:
			r.refresh(k)
		default:
			return
		}
	}
}

// refresh recomputes one segment's shares from the current posteriors.
func (r *Router) refresh(k segKey) {
	v, ok := r.segs.Load(k)
	if !ok {
		return
	}
	st := v.(*segState)
	defer st.refreshing.Store(false)
	snap := r.reg.Snapshot()
	ep, ok := snap.Endpoints[k.endpoint]
	if !ok {
		r.segs.Delete(k)
		return
	}
	now := r.now()
	arms := make([]bandit.Arm, len(ep.Arms))
	for i, name := range ep.Arms {
		arms[i] = r.armInput(snap, ep, k.segment, name, now)
	}
	st.shares.Store(r.computeShares(BanditPolicy(&ep.Policy), ep.Arms, arms, now))
}

func (r *Router) computeShares(pol bandit.Policy, names []string, arms []bandit.Arm, now time.Time) *shareSet {
	r.estimates.Add(1)
	out := make([]float64, len(arms))
	rng := r.rngs.get()
	pol.Shares(rng, arms, r.draws, out)
	r.rngs.put(rng)
	return &shareSet{at: now, arms: append([]string(nil), names...), posts: append([]bandit.Arm(nil), arms...), shares: out}
}

func (s *shareSet) sameArms(names []string, arms []bandit.Arm) bool {
	if len(s.arms) != len(names) {
		return false
	}
	for i := range names {
		if s.arms[i] != names[i] || s.posts[i].Active != arms[i].Active {
			return false
		}
	}
	return true
}

// drift measures how far the posteriors moved since the shares were
// computed: the largest change of an arm's evidence (trials plus
// pseudo-counts) relative to (10 + its evidence then); 0 when unchanged.
func (s *shareSet) drift(arms []bandit.Arm) float64 {
	d := 0.0
	for i := range arms {
		a, b := s.posts[i], arms[i]
		if a == b {
			continue
		}
		was := float64(a.Trials) + a.PseudoSuccesses + a.PseudoFailures
		now := float64(b.Trials) + b.PseudoSuccesses + b.PseudoFailures
		ds := math.Abs(float64(b.Successes)-float64(a.Successes)) + math.Abs(b.PseudoSuccesses-a.PseudoSuccesses)
		d = max(d, (math.Abs(now-was)+ds)/(10+was), 1e-9)
	}
	return d
}

func (r *Router) seg(endpoint, segment string) *segState {
	k := segKey{endpoint, segment}
	if s, ok := r.segs.Load(k); ok {
		return s.(*segState)
	}
	s, _ := r.segs.LoadOrStore(k, new(segState))
	return s.(*segState)
}
