// Package feedback turns feedback events on prediction tokens into durable
// trial and success counts: token check, attribution window, deduplication
// and the per-event rejection codes of the API.
package feedback

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/telemetry"
)

// Limits of a feedback call.
const (
	MaxEvents    = 1000
	MaxItemIDLen = 1024
)

// EventType is what a feedback event reports; its text is what the API
// and the dedupe keys hold.
type EventType string

// Event types.
const (
	// Click reports a click on an item: a success of the prediction.
	Click EventType = "click"
	// Impression reports that the client showed the prediction's list: the
	// trial of an endpoint whose trials_on is impression.
	Impression EventType = "impression"
	// Reward reports a value (watch time, revenue) the prediction earned,
	// for an endpoint with value rewards.
	Reward EventType = "reward"
)

// Valid reports whether t is one of the event types.
func (t EventType) Valid() bool { return t == Click || t == Impression || t == Reward }

// Rejection codes, per event.
const (
	CodeInvalidToken  = "invalid_prediction_id"
	CodeExpired       = "expired"
	CodeUnknownType   = "unknown_type"
	CodeUnknownArm    = "unknown_endpoint_or_arm"
	CodeInvalidItemID = "invalid_item_id"
	// CodeTooManyEvents: the event names one distinct item_id more than
	// the prediction returned items (predtoken.Token.ItemLimit).
	CodeTooManyEvents = "too_many_events"
	// CodeInvalidValue: a reward event without a finite value ≥ 0, or a
	// click or impression with a value.
	CodeInvalidValue = "invalid_value"
)

// Event is one feedback event as sent by a client.
type Event struct {
	PredictionID string    `json:"prediction_id"`
	Type         EventType `json:"type"`
	ItemID       string    `json:"item_id"`
	// Value is a reward event's value (finite, ≥ 0); nil for the other
	// types.
	Value *Value `json:"value,omitempty"`
}

// Value is a reward event's value. It decodes any JSON number, so that one
// out of float64's range is that event's invalid_value rather than the
// whole call's error.
type Value float64

// UnmarshalJSON reads a JSON number; one too large for a float64 becomes
// ±Inf (rejected by the event's checks).
func (v *Value) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if s == "" || s[0] == '"' || s[0] == '{' || s[0] == '[' || s == "true" || s == "false" {
		return fmt.Errorf("value: want a number, got %s", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return fmt.Errorf("value: %w", err)
	}
	*v = Value(f)
	return nil
}

// valueCode checks an event's value against its type: "" when it is fine,
// else the rejection code.
func (ev *Event) valueCode() string {
	if ev.Type != Reward {
		if ev.Value != nil {
			return CodeInvalidValue
		}
		return ""
	}
	if ev.Value == nil {
		return CodeInvalidValue
	}
	if v := float64(*ev.Value); !(v >= 0) || math.IsInf(v, 1) {
		return CodeInvalidValue
	}
	return ""
}

// Rejection names a rejected event by its index in the call.
type Rejection struct {
	Index int    `json:"index"`
	Code  string `json:"code"`
}

// Result is the answer to a feedback call.
type Result struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// Lookup reports whether the endpoint exists and still has the arm, and the
// endpoint's value reward cap (registry.Reward.ValueCap): 0 for an endpoint
// whose reward is a click.
type Lookup func(endpoint, arm string) (rewardCap float64, ok bool)

// Store is the durable side of feedback.
type Store interface {
	ApplyFeedback(ctx context.Context, ops []store.FeedbackOp, pendingTrials map[counters.Key]uint64) ([]store.FeedbackResult, error)
	AddTrials(ctx context.Context, deltas map[counters.Key]uint64) error
	SweepExpired(ctx context.Context, limit int) (int, error)
	// AddLinear adds linear-thompson sum deltas; it owns them: what it
	// could not write it retries itself (Redis) or reports lost (the
	// embedded store, whose disk then fails every write).
	AddLinear(ctx context.Context, deltas map[counters.LinKey][]float64) error
}

// Service records feedback durably and keeps the in-memory counters in
// step. Safe for concurrent use.
type Service struct {
	signer *predtoken.Signer
	db     Store
	table  *counters.Table
	lookup Lookup
	log    *slog.Logger
	now    func() time.Time
	offp   *offpolicy.Table

	flushEvery time.Duration
	final      func() context.Context
	tel        *telemetry.Telemetry
	met        *telemetry.Metrics
	shadows    ShadowReplay
}

// ShadowReplay replays a shadowed prediction's first click against its
// shadows' lists; *shadow.Recorder is one.
type ShadowReplay interface {
	Clicked(ctx context.Context, endpoint, key string, expires time.Time, item string)
}

// Options are a Service's optional collaborators and settings. The zero
// value flushes every FlushInterval and keeps no off-policy sums and no
// telemetry.
type Options struct {
	// FlushInterval is how often Run flushes pending trials; 0 means
	// FlushInterval.
	FlushInterval time.Duration
	// OffPolicy, when set, receives each newly counted success for the
	// off-policy sums.
	OffPolicy *offpolicy.Table
	// Telemetry, when set, counts feedback events, trials and successes,
	// times trial flushes and traces both.
	Telemetry *telemetry.Telemetry
	// FinalContext, when set, gives the context of the flush Run makes
	// once its own context has ended, so that a server bounds it by its
	// shutdown deadline; it is called once, then. Nil: FinalFlushTimeout
	// from the end of Run's context.
	FinalContext func() context.Context
	// Shadows, when set, gets the first click of every shadowed
	// prediction, once it is durable.
	Shadows ShadowReplay
}

// FinalFlushTimeout bounds Run's last flush when Options.FinalContext is
// not set.
const FinalFlushTimeout = 5 * time.Second

// NewService returns a feedback service. log may be nil.
func NewService(signer *predtoken.Signer, db Store, table *counters.Table, lookup Lookup, log *slog.Logger, opts Options) *Service {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{signer: signer, db: db, table: table, lookup: lookup, log: log, now: time.Now,
		flushEvery: opts.FlushInterval, final: opts.FinalContext, offp: opts.OffPolicy, tel: opts.Telemetry,
		shadows: opts.Shadows}
	if opts.Telemetry != nil {
		s.met = opts.Telemetry.Metrics
	}
	return s
}

// Record checks and applies a batch of events. When it returns a nil error,
// every accepted event is durable. An error means nothing was acknowledged;
// the client retries the same call, and deduplication makes that safe.
func (s *Service) Record(ctx context.Context, events []Event) (*Result, error) {
	ctx, span := s.tel.Child(ctx, "feedback.record")
	res, err := s.record(ctx, events)
	s.recorded(ctx, span, len(events), res, err)
	return res, err
}

func (s *Service) record(ctx context.Context, events []Event) (*Result, error) {
	if len(events) == 0 || len(events) > MaxEvents {
		return nil, fault.Field("events", "invalid_events", "a feedback call carries 1 to %d events, got %d", MaxEvents, len(events))
	}
	res := &Result{Rejected: []Rejection{}}
	ops := make([]store.FeedbackOp, 0, len(events))
	toks := make([]*predtoken.Token, 0, len(events))
	idx := make([]int, 0, len(events)) // the event index of each op
	// One clock reading for the window check and the store's dedupe
	// expiry, so the two never disagree about an event at the window's edge.
	now := s.now()
	for i, ev := range events {
		code := ""
		var tok *predtoken.Token
		switch {
		case !ev.Type.Valid():
			code = CodeUnknownType
		case len(ev.ItemID) > MaxItemIDLen:
			code = CodeInvalidItemID
		default:
			code = ev.valueCode()
		}
		if code == "" {
			var err error
			if tok, err = s.signer.Verify(ev.PredictionID); err != nil {
				code = CodeInvalidToken
			}
		}
		var rewardCap float64
		if code == "" {
			var ok bool
			switch rewardCap, ok = s.lookup(tok.Endpoint, tok.Arm); {
			case !ok:
				code = CodeUnknownArm
			case ev.Type == Reward && rewardCap == 0:
				// A click endpoint has no use for a value.
				code = CodeUnknownType
			case now.Sub(tok.Time) > tok.Window:
				code = CodeExpired
			}
		}
		if code != "" {
			res.Rejected = append(res.Rejected, Rejection{Index: i, Code: code})
			continue
		}
		if tok.Pinned {
			// A QA caller pinned the arm: the prediction counts nowhere,
			// so its feedback is accepted and changes nothing.
			res.Accepted++
			continue
		}
		toks = append(toks, tok)
		idx = append(idx, i)
		op := store.FeedbackOp{
			Prediction: tok.Key(),
			Event:      string(ev.Type) + "\x00" + ev.ItemID,
			// The distinct item_ids of one prediction are bounded by what it
			// served, so its dedupe state is too. An event without an item
			// (an impression of the list) is not counted against it.
			Item:     ev.ItemID,
			MaxItems: tok.ItemLimit(),
			// On a value endpoint a click is logged and deduplicated but is
			// no success: the reward events are, so the two never mix.
			Success: ev.Type == Click && rewardCap == 0,
			// A click or reward implies the list was seen, so it counts the
			// trial too.
			Trial:   tok.OnImpression,
			Counter: counters.Key{Endpoint: tok.Endpoint, Segment: tok.Segment, Arm: tok.Arm},
			Expires: tok.Time.Add(tok.Window),
			Now:     now,
		}
		if ev.Type == Reward {
			op.Reward = counters.RewardUnits(float64(*ev.Value), rewardCap)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return res, nil
	}
	pending := s.table.DrainPending()
	out, err := s.db.ApplyFeedback(ctx, ops, pending)
	if err != nil {
		s.table.Restore(pending)
		s.met.FeedbackEvents(ctx, "store_unavailable", int64(len(ops)))
		return nil, &fault.Error{Kind: fault.Unavailable, Code: "store_unavailable", Message: "feedback not recorded, retry", Err: err}
	}
	tooMany := false
	for i, r := range out {
		if r.Duplicate {
			res.Duplicates++
			continue
		}
		if r.TooMany {
			res.Rejected = append(res.Rejected, Rejection{Index: idx[i], Code: CodeTooManyEvents})
			tooMany = true
			continue
		}
		res.Accepted++
		if r.Trial || r.Success || r.Reward > 0 {
			var t, su uint64
			if r.Trial {
				t = 1
			}
			if r.Success {
				su = 1
			}
			s.table.Cell(ops[i].Counter).AddDurable(t, su, r.Reward)
			s.met.Trial(ctx, ops[i].Counter.Endpoint, ops[i].Counter.Arm, int64(t))
			s.met.Success(ctx, ops[i].Counter.Endpoint, ops[i].Counter.Arm, int64(su))
			s.met.RewardSuccess(ctx, ops[i].Counter.Endpoint, ops[i].Counter.Arm, counters.Successes(0, r.Reward))
			// A held-out prediction's success counts in the holdout's cell
			// (its token's segment) and nowhere in the bandit's estimates.
			if s.offp != nil && toks[i].Segment != counters.HoldoutSegment && (r.Success || r.Reward > 0) {
				tk := toks[i]
				// The prediction's reward r before and after, by the rule
				// the counters follow.
				before, after := 0.0, 1.0
				if !r.Success {
					before = counters.Successes(0, r.RewardTotal-r.Reward)
					after = counters.Successes(0, r.RewardTotal)
				}
				s.offp.Reward(tk.Endpoint, tk.Segment, tk.Arm, tk.Time, tk.Propensity, before, after)
			}
			s.table.AddToAggregate(ops[i].Counter, t, su, r.Reward)
			if tk := toks[i]; tk.X != nil && tk.Segment != counters.HoldoutSegment {
				cell := s.table.Linear(counters.LinKey{Endpoint: tk.Endpoint, Arm: tk.Arm, Layout: tk.Layout}, len(tk.X))
				if r.Trial {
					cell.AddTrial(tk.X)
				}
				// The reward r this event adds: 1 for a counted click, the
				// fraction of the cap it adds on a value endpoint.
				if reward := counters.Successes(su, r.Reward); reward > 0 {
					cell.AddReward(tk.X, reward)
				}
			}
			// A shadowed prediction is replayed at its first reward: its
			// counted click, or on a value endpoint the first reward event
			// that added to its value.
			firstReward := r.Success || (r.Reward > 0 && r.RewardTotal == r.Reward)
			if firstReward && s.shadows != nil && toks[i].Shadowed {
				tk := toks[i]
				s.shadows.Clicked(ctx, tk.Endpoint, ops[i].Prediction, tk.Expires(), ops[i].Item)
			}
		}
	}
	if tooMany {
		slices.SortFunc(res.Rejected, func(a, b Rejection) int { return a.Index - b.Index })
	}
	return res, nil
}

// sweepChunk bounds one sweep transaction, so feedback commits never wait
// long behind it.
const sweepChunk = 2000

// sweep deletes every expired dedupe key, a chunk per transaction.
func (s *Service) sweep(ctx context.Context) {
	total := 0
	for ctx.Err() == nil {
		n, err := s.db.SweepExpired(ctx, sweepChunk)
		if err != nil {
			s.log.Error("sweep failed", "err", err)
			return
		}
		total += n
		if n < sweepChunk {
			break
		}
		time.Sleep(5 * time.Millisecond) // let waiting commits through
	}
	if total > 0 {
		s.log.Debug("swept expired dedupe keys", "n", total)
	}
}

// Flush writes the pending trial counts and linear-thompson sums to the
// store, then refits the linear posteriors whose sums changed, so a
// request reads a posterior at most one flush interval old.
func (s *Service) Flush(ctx context.Context) error {
	var linErr error
	if lin := s.table.DrainLinear(); len(lin) > 0 {
		if err := s.db.AddLinear(ctx, lin); err != nil {
			linErr = fmt.Errorf("flush linear sums: %w", err)
		}
	}
	s.table.Refit()
	pending := s.table.DrainPending()
	if len(pending) == 0 {
		return linErr
	}
	ctx, span := s.tel.Start(ctx, "store.flush")
	start := time.Now()
	err := s.db.AddTrials(ctx, pending)
	s.flushed(ctx, span, pending, time.Since(start), err)
	if err != nil {
		s.table.Restore(pending)
		return fmt.Errorf("flush trials: %w", err)
	}
	return linErr
}

// FlushInterval bounds how long a served trial stays only in memory.
const FlushInterval = 250 * time.Millisecond

// Run flushes trials every FlushInterval and sweeps expired dedupe keys
// every minute until ctx ends, then flushes once more (see
// Options.FinalContext).
func (s *Service) Run(ctx context.Context) {
	every := s.flushEvery
	if every <= 0 {
		every = FlushInterval
	}
	flush := time.NewTicker(every)
	sweep := time.NewTicker(time.Minute)
	defer flush.Stop()
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			s.finalFlush(ctx)
			return
		case <-flush.C:
			if err := s.Flush(ctx); err != nil {
				s.log.Error("flush failed", "err", err)
			}
		case <-sweep.C:
			s.sweep(ctx)
		}
	}
}

// finalFlush is Run's last flush, after ctx ended: on Options.FinalContext,
// else on ctx's values with FinalFlushTimeout.
func (s *Service) finalFlush(ctx context.Context) {
	var fctx context.Context
	if s.final != nil {
		fctx = s.final()
	} else {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), FinalFlushTimeout)
		defer cancel()
	}
	if err := s.Flush(fctx); err != nil {
		s.log.Error("final flush failed", "err", err)
	}
}
