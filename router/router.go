// Package router serves one recommend call in three steps. Choose: it finds
// the endpoint, names the segment and lets the endpoint's policy choose an
// arm. Serve: it turns the request into the arm's inputs, calls its backend
// under a deadline and falls back when that fails. Record: it counts the
// trial and signs the prediction token. What else follows a prediction (the
// prediction log, the off-policy sums, metrics) is up to the Observers,
// which receive an Outcome of every call.
package router

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
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
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/topk"
)

// Limits of a recommend call; those of k are package topk's.
const (
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

// Request is a recommend call after decoding. K = 0 means topk.Default.
type Request struct {
	Endpoint   string
	UserID     string
	Context    map[string]string
	Features   map[string]any
	Candidates []string
	Exclude    []string
	K          int
	// Pin, when set, is the arm a QA caller pins (X-Modelgate-Arm): it
	// serves, active or paused, with no fallback, and the prediction is
	// never a trial nor in any statistic. The caller checks who may pin.
	Pin string
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
	// Pinned: the request pinned the arm; the prediction counts nowhere.
	Pinned bool `json:"pinned,omitempty"`
}

// Router is safe for concurrent use. Create it with New.
type Router struct {
	reg    Snapshotter
	table  *counters.Table
	signer *predtoken.Signer
	log    *slog.Logger
	now    func() time.Time
	rngs   rngPool
	segs   sync.Map // segKey -> *segState
	errs   counters.Errors
	sticky stickyStore
	guards sync.Map // guardKey -> *armGuard
	tracer Tracer
	obs    []Observer
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
	// shadowQ holds shadowed predictions for RunShadows' workers; its
	// capacity is the worker budget.
	shadowQ    chan *shadowJob
	shadowSink ShadowSink
	shadowLog  PredictionLog
}

// Options are a Router's optional collaborators. The zero value is usable.
type Options struct {
	// Observers learn what every recommend call of a known endpoint did
	// (see Observer), in order, on the request path.
	Observers []Observer
	// Tracer, when set, traces the steps of a recommend call (choose,
	// featurize, the model call) under the request's span.
	Tracer Tracer
	// OnGuardrail is called when an arm breaches its endpoint's
	// guardrails; it is expected to pause the arm with reason. It is called
	// from RunGuardrails, one pause at a time, never on the request path.
	OnGuardrail func(endpoint, arm, reason string)
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
	// Shadows, when set, receives what the endpoints' shadow arms did; nil
	// turns shadow calls off (no prediction is shadowed).
	Shadows ShadowSink
	// ShadowWorkers is the fixed number of shadow calls in flight at once
	// (RunShadows' workers); 0 means DefaultShadowWorkers.
	ShadowWorkers int
	// ShadowLog, when set, gets the prediction log record of a shadowed
	// prediction once its shadows answered (PredictionLogObserver leaves
	// those to it).
	ShadowLog PredictionLog
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
		tracer: opt.Tracer, obs: slices.Clone(opt.Observers), onTrip: opt.OnGuardrail,
		refreshQ: make(chan segKey, refreshQueue), trips: make(chan trip, tripQueueLen), draws: shareDraws,
		syncRefresh: opt.SyncRefresh, shadowSink: opt.Shadows, shadowLog: opt.ShadowLog}
	workers := opt.ShadowWorkers
	if workers <= 0 {
		workers = DefaultShadowWorkers
	}
	r.shadowQ = make(chan *shadowJob, workers)
	if r.tracer == nil {
		r.tracer = noTracer{}
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
	if err := topk.Check(req.K, true); err != nil {
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

// checkPin checks that the arm a request pins ("" for none) is one of the
// endpoint's (400 invalid_arm otherwise) and that its model is loaded (503
// no_healthy_arm otherwise: a version that failed to load has nothing to
// call).
func checkPin(snap *registry.Snapshot, ep *registry.Endpoint, arm string) error {
	if arm == "" {
		return nil
	}
	if !slices.Contains(ep.Arms, arm) {
		return fault.New(fault.Invalid, "invalid_arm", "%s is not an arm of endpoint %s: a pinned arm must be one (active or paused)", arm, ep.Name)
	}
	if v := snap.Versions[arm]; v == nil || v.Scorer == nil {
		why := "it is not registered"
		if v != nil && v.LoadErr != nil {
			why = v.LoadErr.Error()
		}
		return fault.New(fault.Unavailable, "no_healthy_arm", "the pinned arm %s is not loaded: %s", arm, why)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Recommend serves one request in three steps: choose an arm, serve it
// (falling back when it fails for a reason of its own), and record the
// served prediction. Then, served or not, the observers learn what a call of
// a known endpoint did.
func (r *Router) Recommend(ctx context.Context, req *Request) (resp *Response, err error) {
	start := time.Now()
	if err := Validate(req); err != nil {
		return nil, err
	}
	snap := r.reg.Snapshot()
	ep, ok := snap.Endpoints[req.Endpoint]
	if !ok {
		return nil, fault.New(fault.NotFound, "endpoint_not_found", "endpoint %q does not exist", req.Endpoint)
	}
	if err := checkPin(snap, ep, req.Pin); err != nil {
		return nil, err
	}
	// The arms' posteriors live in this frame: kept apart from the choice,
	// whose contents reach the observers, they need no allocation.
	var armBuf [16]bandit.Arm
	c, arms := r.choose(ctx, snap, ep, req, armBuf[:0])
	s := serving{served: -1}
	var in input
	if len(r.obs) > 0 || c.shadows != 0 {
		defer func() { r.notify(ctx, start, snap, ep, in, &c, &s, resp, err) }()
	}
	in = newInput(req)
	if err := r.serve(ctx, snap, ep, &in, arms, &c, &s); err != nil {
		return nil, err
	}
	return r.record(snap, ep, req.UserID, &c, &s), nil
}

// choice is what the choose step decided for one request.
type choice struct {
	segment string    // the request's segment before admission (see record)
	now     time.Time // the prediction's time, as its token says
	chosen  int       // index into the endpoint's arms; -1 when no arm is active
	prop    float64   // the policy's probability of the arm that serves
	shares  []float64 // the policy's probability of each arm for this request; shared, read-only
	sticky  bool      // chosen is the user's sticky assignment
	pinned  bool      // chosen is the arm the request pinned
	batch   bool      // the request is an entry of a batch call
	holdout bool      // chosen is the holdout arm, serving a held-out request
	shadows uint8     // bit i: the endpoint's shadow i scores the request too (registry.MaxShadows ≤ 8)
	id      [12]byte  // the prediction token's random id, once recorded
	x       []float64 // the request's context vector under a linear-thompson policy, else nil
}

// choose names the request's segment (its own, or the overflow segment when
// the endpoint has no room for it), gathers the arms' posteriors into buf
// (paused and unavailable arms inactive) and picks an arm: the arm a QA
// caller pinned; the holdout arm when the request is held out; the user's
// sticky assignment while it holds and its arm is active; else a draw from
// the segment's traffic shares.
func (r *Router) choose(ctx context.Context, snap *registry.Snapshot, ep *registry.Endpoint, req *Request, buf []bandit.Arm) (choice, []bandit.Arm) {
	c := choice{segment: r.segmentOf(ep, req.Context), now: r.now(), chosen: -1}
	_, span := r.tracer.Child(ctx, "choose")
	arms := buf[:0]
	for _, name := range ep.Arms {
		arms = append(arms, r.armInput(snap, ep, c.segment, name, c.now))
	}
	if m := ep.Policy.LinearModel(); m != nil && req.Pin == "" {
		c.x = m.Vector(req.Context, req.Features, make([]float64, m.Dims()))
	}
	if req.Pin != "" {
		// Validate found the arm on the endpoint; the policy has no say.
		c.chosen, c.prop, c.pinned = slices.Index(ep.Arms, req.Pin), 1, true
	} else if h := r.heldOut(ep, req.UserID, arms); h >= 0 {
		// The bandit has no say either: the holdout arm serves for certain.
		c.chosen, c.prop, c.holdout = h, 1, true
	} else if !r.stick(ep, req.UserID, arms, &c) {
		// The arm is drawn from the segment's traffic shares: Thompson
		// sampling under the posterior as of their last refresh (batched
		// updates), so the logged propensity is exactly the probability
		// of this choice. Under linear-thompson the shares are the
		// request's own, at its context vector.
		c.shares = r.policyShares(ep, &c, arms)
		rng := r.rngs.get()
		c.chosen = bandit.Pick(rng, c.shares)
		r.rngs.put(rng)
		if c.chosen >= 0 {
			c.prop = c.shares[c.chosen]
		}
	}
	r.drawShadows(ep, &c)
	endChoose(span, ep, c.segment, c.chosen, c.prop)
	return c, arms
}

// heldOut returns the index of the endpoint's holdout arm when the request
// is one of its holdout's share, else -1. The draw comes before the bandit's
// and does not depend on the segment: with a sticky policy it is a hash of
// (endpoint, user), so a user is held out or not on every replica and
// after restarts (while the share stays); otherwise it is a fresh draw per
// request. While the holdout arm is paused or unavailable, no request is
// held out: the bandit serves them all.
func (r *Router) heldOut(ep *registry.Endpoint, user string, arms []bandit.Arm) int {
	h := ep.Policy.Holdout
	if h == nil {
		return -1
	}
	var u float64
	if ep.Policy.StickyTTL() > 0 {
		u = HoldoutDraw(ep.Name, user)
	} else {
		rng := r.rngs.get()
		u = rng.Float64()
		r.rngs.put(rng)
	}
	if u >= h.Share {
		return -1
	}
	if i := slices.Index(ep.Arms, h.Arm); i >= 0 && arms[i].Active {
		return i
	}
	return -1
}

// HoldoutDraw is a user's uniform draw in [0, 1) for an endpoint's holdout
// under a sticky policy: the user is held out when it is below the share.
// It is the first 53 bits of SHA-256(endpoint NUL user), the same on every
// replica and in every process.
func HoldoutDraw(endpoint, user string) float64 {
	// On the stack for any endpoint name and valid user id: no allocation
	// on the request path.
	var buf [128 + 1 + MaxUserIDLen]byte
	b := append(append(append(buf[:0], endpoint...), 0), user...)
	sum := sha256.Sum256(b)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// stick chooses the user's sticky arm when the endpoint keeps assignments
// and the user's still holds on an active arm; it reports whether it did.
func (r *Router) stick(ep *registry.Endpoint, user string, arms []bandit.Arm, c *choice) bool {
	if ep.Policy.StickyTTL() <= 0 {
		return false
	}
	arm, p, ok := r.sticky.get(ep.Name, user, c.now)
	if !ok {
		return false
	}
	for i, name := range ep.Arms {
		if name == arm && arms[i].Active {
			c.chosen, c.prop, c.sticky = i, p, true
			c.shares = make([]float64, len(arms)) // the assignment holds: certain
			c.shares[i] = 1
		}
	}
	return c.sticky
}

// fellBackTo makes arm fb, which served in place of the policy's choice, the
// choice's arm: its propensity is the probability the policy gives it, as for
// any other choice. A held-out request whose holdout arm failed is served
// like any other: the fallback's prediction is the bandit's, counted in the
// request's segment, and no longer the holdout's.
func (r *Router) fellBackTo(ep *registry.Endpoint, arms []bandit.Arm, c *choice, fb int) {
	c.holdout = false
	if c.shares == nil || c.sticky {
		c.shares = r.policyShares(ep, c, arms)
	}
	c.prop = c.shares[fb]
}

// maxCalls is the most model calls one request makes: its arm's, then a
// fallback's.
const maxCalls = 2

// serving is what the serve step did.
type serving struct {
	served   int            // index into the endpoint's arms of the arm that served; -1 when none did
	fellBack bool           // served is not the policy's choice
	items    []backend.Item // what served answered, filtered
	calls    [maxCalls]Call // the model calls made, in order
	ncalls   int
}

// input is a request's inputs as every arm's call takes them: exclusions as
// a set, candidates without the excluded ones.
type input struct {
	freq  featurizer.Request
	cands []string
	excl  map[string]struct{}
	k     int
}

func newInput(req *Request) input {
	in := input{cands: req.Candidates, k: topk.OrDefault(req.K)}
	if len(req.Exclude) > 0 {
		in.excl = make(map[string]struct{}, len(req.Exclude))
		for _, id := range req.Exclude {
			in.excl[id] = struct{}{}
		}
	}
	if in.cands != nil && in.excl != nil {
		kept := make([]string, 0, len(in.cands))
		for _, id := range in.cands {
			if _, x := in.excl[id]; !x {
				kept = append(kept, id)
			}
		}
		in.cands = kept
	}
	in.freq = featurizer.Request{UserID: req.UserID, Context: req.Context, Features: req.Features, Candidates: in.cands}
	return in
}

// serve calls the chosen arm and, when it fails for a reason of its own, the
// fallback arm. A request at fault (a missing feature) or whose client went
// away gets no fallback. It returns the request's error when no arm served.
func (r *Router) serve(ctx context.Context, snap *registry.Snapshot, ep *registry.Endpoint, in *input, arms []bandit.Arm, c *choice, s *serving) error {
	var err error
	if c.chosen >= 0 {
		err = r.try(ctx, snap, ep, c.chosen, in, s)
	}
	return r.fallBack(ctx, snap, ep, arms, c, s, in, err)
}

// fallBack finishes serving a request after its chosen arm's call (none
// when no arm is active), which ended with chosenErr: when no arm served and
// neither the request nor its client is at fault, the fallback arm is
// called. It returns the request's error when no arm served.
func (r *Router) fallBack(ctx context.Context, snap *registry.Snapshot, ep *registry.Endpoint, arms []bandit.Arm, c *choice, s *serving, in *input, chosenErr error) error {
	lastErr := chosenErr
	if lastErr != nil && fault.As(lastErr) != nil {
		return lastErr
	}
	if s.served < 0 && ctx.Err() != nil {
		return fmt.Errorf("recommend: %w", ctx.Err()) // no fallback for nobody
	}
	// A pinned arm is what the caller asked for: no other arm answers.
	if s.served < 0 && !c.pinned {
		if fb := fallbackArm(ep, arms, c.chosen); fb >= 0 {
			switch err := r.try(ctx, snap, ep, fb, in, s); {
			case err == nil:
				s.fellBack = true
				r.fellBackTo(ep, arms, c, fb)
			case fault.As(err) != nil:
				return err
			default:
				lastErr = err
			}
		}
	}
	if s.served < 0 {
		return unserved(s, lastErr)
	}
	if c.chosen >= 0 && lastErr != nil {
		r.log.WarnContext(ctx, "arm failed", "endpoint", ep.Name, "arm", ep.Arms[c.chosen], "served", ep.Arms[s.served], "err", lastErr)
	}
	return nil
}

// try calls arm i; when it serves, its items are s's.
func (r *Router) try(ctx context.Context, snap *registry.Snapshot, ep *registry.Endpoint, i int, in *input, s *serving) error {
	v := snap.Versions[ep.Arms[i]]
	start := time.Now()
	items, took, err := r.call(ctx, v, in)
	r.guard(ctx, ep, i, err, time.Since(start))
	return r.settle(ctx, ep, i, v, items, took, err, s)
}

// guard feeds arm i's guardrail with one call's outcome: every call the arm
// answered counts, except a refused input (the request's fault, neither a
// failure nor a served call) and a call the request or its client ended.
func (r *Router) guard(ctx context.Context, ep *registry.Endpoint, i int, err error, d time.Duration) {
	if fault.As(err) == nil && ctx.Err() == nil && (err == nil || backend.Classify(err) != backend.ClassRejected) {
		r.guardrail(ep, ep.Arms[i], err != nil, d)
	}
}

// settle records what arm i's call returned in s: the call, and a failure
// of the arm's own (not the request's, not the client's) by class; when the
// arm served, its items are s's.
func (r *Router) settle(ctx context.Context, ep *registry.Endpoint, i int, v *registry.Version, items []backend.Item, took time.Duration, err error, s *serving) error {
	arm := ep.Arms[i]
	class := "" // the arm's failure class; "" when it served or the request is at fault
	if err != nil && fault.As(err) == nil && ctx.Err() == nil {
		class = backend.Classify(err)
	}
	if took >= 0 {
		s.calls[s.ncalls] = Call{Arm: arm, Backend: v.Spec.Backend.Type, Latency: took, Class: class, Err: err}
		s.ncalls++
	}
	if err != nil {
		if class != "" {
			r.errs.Add(counters.ErrorKey{Endpoint: ep.Name, Arm: arm, Class: class})
		}
		return err
	}
	s.items, s.served = items, i
	return nil
}

// unserved is the error of a request no arm served: the first refusal of
// its input when an arm refused it (no trial: nobody served), else
// no_healthy_arm with the last failure.
func unserved(s *serving, lastErr error) error {
	for _, c := range s.calls[:s.ncalls] {
		if c.Class == backend.ClassRejected {
			return rejectedInput(c.Arm, c.Err)
		}
	}
	msg := "no healthy arm could serve and no fallback is available"
	if lastErr != nil {
		msg = fmt.Sprintf("%s (last error: %v)", msg, lastErr)
	}
	return fault.New(fault.Unavailable, "no_healthy_arm", "%s", msg)
}

// record makes a served prediction count: it admits the segment (only a
// served request makes state; when others took the last places meanwhile,
// it overflows to "other"), counts the trial unless trials are counted on
// impressions, keeps the user's sticky assignment and signs the token into
// the response. A pinned prediction counts nowhere, and a held-out one only
// in the endpoint's holdout segment.
func (r *Router) record(snap *registry.Snapshot, ep *registry.Endpoint, user string, c *choice, s *serving) *Response {
	arm := ep.Arms[s.served]
	spec := &snap.Versions[arm].Spec
	onImpression := ep.Policy.TrialsOn == registry.TrialsOnImpression
	segment, prop := c.segment, c.prop
	switch {
	case c.pinned:
		// Counted nowhere: no segment admitted, no trial, no assignment.
		prop = 1
	case c.holdout:
		// A trial of the holdout arm in the endpoint's HoldoutSegment,
		// never in the bandit's segments nor their aggregate, and no
		// sticky assignment (the user's membership is its hash). The token
		// names that segment, so its feedback counts there too.
		segment = counters.HoldoutSegment
		if !onImpression {
			r.table.Cell(counters.Key{Endpoint: ep.Name, Segment: segment, Arm: arm}).AddTrial()
		}
	default:
		if !r.table.Admit(ep.Name, segment, ep.Policy.SegmentCap()) {
			segment = counters.OtherSegment
		}
		key := counters.Key{Endpoint: ep.Name, Segment: segment, Arm: arm}
		if !onImpression {
			r.table.Cell(key).AddTrial()
			r.table.AddToAggregate(key, 1, 0, 0)
			if c.x != nil {
				m := ep.Policy.LinearModel()
				r.table.Linear(counters.LinKey{Endpoint: ep.Name, Arm: arm, Layout: m.Layout()}, m.Dims()).AddTrial(c.x)
			}
		}
		r.noteServed(ep.Name, segment)
		if ttl := ep.Policy.StickyTTL(); ttl > 0 && !c.sticky && !s.fellBack {
			r.sticky.put(ep.Name, user, arm, c.prop, c.now.Add(ttl))
		}
	}
	c.id = predtoken.NewID()
	tok := predtoken.Token{Endpoint: ep.Name, Arm: arm, Segment: segment, Time: c.now,
		Propensity: prop, Window: ep.Policy.AttributionWindow.Std(), Items: len(s.items),
		OnImpression: onImpression && !c.pinned, Pinned: c.pinned, Shadowed: c.shadows != 0, ID: c.id}
	if c.x != nil && !c.pinned && !c.holdout {
		// Feedback adds the click's reward (and, on impressions, the
		// trial) to the arm's sums with the vector the token carries.
		tok.X, tok.Layout = c.x, ep.Policy.LinearModel().Layout()
	}
	return &Response{PredictionID: r.signer.Sign(&tok), Endpoint: ep.Name, Arm: arm, Model: spec.Name,
		Version: spec.Version, Segment: segment, Items: s.items, Fallback: s.fellBack, Pinned: c.pinned}
}

// notify hands a served, shadowed prediction to the shadow workers and
// tells every observer what a recommend call of a known endpoint did.
func (r *Router) notify(ctx context.Context, start time.Time, snap *registry.Snapshot, ep *registry.Endpoint, in input, c *choice, s *serving, resp *Response, err error) {
	o := Outcome{Endpoint: ep.Name, Segment: c.segment, Arms: ep.Arms, Shares: c.shares, Chosen: c.chosen,
		Served: s.served, Propensity: c.prop, Fallback: s.fellBack, Sticky: c.sticky, Time: c.now,
		Pinned: c.pinned, Holdout: c.holdout, Batch: c.batch, Latency: time.Since(start), Err: err, calls: s.calls, ncalls: s.ncalls}
	if resp != nil {
		o.Segment, o.PredictionID, o.Items = resp.Segment, resp.PredictionID, resp.Items
		o.Trial = ep.Policy.TrialsOn != registry.TrialsOnImpression && !c.pinned
		o.ShadowLogged = r.submitShadows(snap, ep, in, c, &o)
	}
	for _, ob := range r.obs {
		ob.Observe(ctx, o)
	}
}

// policyShares is the probability that the endpoint's policy picks each
// arm for the request of c: the segment's cached traffic shares, or, under
// linear-thompson, the shares at the request's context vector, computed
// from each arm's posterior as last fitted (counters.LinCell.Posterior).
func (r *Router) policyShares(ep *registry.Endpoint, c *choice, arms []bandit.Arm) []float64 {
	if c.x == nil {
		return r.shares(ep, c.segment, arms, c.now)
	}
	m := ep.Policy.LinearModel()
	var postBuf [16]*bandit.LinearArm
	var actBuf [16]bool
	var scoreBuf [16]bandit.LinearScore
	posts, active, scores := postBuf[:0], actBuf[:0], scoreBuf[:0]
	for i, name := range ep.Arms {
		cell := r.table.Linear(counters.LinKey{Endpoint: ep.Name, Arm: name, Layout: m.Layout()}, m.Dims())
		posts = append(posts, cell.Posterior(ep.Policy.Lambda))
		active = append(active, arms[i].Active)
		scores = append(scores, bandit.LinearScore{})
	}
	bandit.LinearScores(c.x, ep.Policy.Noise, posts, active, scores)
	out := make([]float64, len(arms))
	bandit.LinearShares(scores, ep.Policy.MinShare, out)
	return out
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
	pol := ep.Policy.Bandit()
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
// "" or "all" of a segmented endpoint, the endpoint-wide AggregateSegment
// (counters.View, the rule the report follows too).
func viewSegment(ep *registry.Endpoint, segment string) string {
	return counters.View(len(ep.Policy.SegmentBy) > 0, segment)
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
	h := ep.Policy.HalfLife.Std() // 0 unless the policy is discounted-thompson
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
			t, s = float64(ti), min(si, float64(ti))
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
// then enforces candidates, exclude and k whatever the model returned. took
// is the model call's duration; -1 when the inputs could not be built and
// no call was made.
func (r *Router) call(ctx context.Context, v *registry.Version, in *input) (items []backend.Item, took time.Duration, err error) {
	inputs, err := r.featurize(ctx, v, in)
	if err != nil {
		return nil, -1, err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout(v))
	defer cancel()
	cctx, pspan := r.tracer.Child(cctx, v.SpanName)
	start := time.Now()
	items, err = v.Scorer.Predict(cctx, &backend.Request{Inputs: inputs, UserID: in.freq.UserID, Context: in.freq.Context,
		Candidates: in.cands, Exclude: in.excl, K: in.k})
	if err == nil {
		// Whatever the backend let through, a non-finite score is a sick
		// model's output, and could not be encoded as JSON.
		err = backend.CheckScores(items)
	}
	took = time.Since(start)
	endPredict(pspan, v, err)
	if err != nil {
		return nil, took, fmt.Errorf("%s: %w", v.Spec.Arm, err)
	}
	return filterItems(items, in.cands, in.excl, in.k), took, nil
}

// featurize builds version v's input tensors for in; its errors are the
// request's (400 invalid_feature).
func (r *Router) featurize(ctx context.Context, v *registry.Version, in *input) ([]featurizer.Tensor, error) {
	_, fspan := r.tracer.Child(ctx, "featurize")
	inputs, err := v.Plan.Build(&in.freq)
	endFeaturize(fspan, v, err)
	if err != nil {
		var fe *featurizer.FieldError
		if errors.As(err, &fe) {
			return nil, fault.Field(fe.Field, "invalid_feature", "%s", fe.Message)
		}
		return nil, fault.New(fault.Invalid, "invalid_feature", "%v", err)
	}
	return inputs, nil
}

// callTimeout is the deadline of one call of version v's model.
func callTimeout(v *registry.Version) time.Duration {
	if t := v.Spec.Backend.Timeout(); t > 0 {
		return t
	}
	return DefaultBackendTimeout
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
	pol := ep.Policy.Bandit()
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
	st.shares.Store(r.computeShares(ep.Policy.Bandit(), ep.Arms, arms, now))
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
