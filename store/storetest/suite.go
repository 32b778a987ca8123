package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/store"
)

// Meta is the store of a data dir's own facts: metadata (which config
// entries were seeded) and the token signing key.
type Meta interface {
	Meta(ctx context.Context, key string) ([]byte, error)
	SetMeta(ctx context.Context, key string, val []byte) error
	SigningKey(ctx context.Context) ([]byte, error)
}

// Counts is the store of the bandit's counts: trials, feedback with its
// dedupe keys, and the durable totals they add up to.
type Counts interface {
	feedback.Store
	counters.Loader
}

// Series is the store of history points and off-policy buckets, pruned
// together.
type Series interface {
	report.Series
	offpolicy.Store
}

// Run runs every concern's tests against stores made by open.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Run("Registry", func(t *testing.T) { RunRegistry(t, func(t *testing.T) registry.Store { return open(t) }) })
	t.Run("Meta", func(t *testing.T) { RunMeta(t, func(t *testing.T) Meta { return open(t) }) })
	t.Run("Counts", func(t *testing.T) { RunCounts(t, func(t *testing.T) Counts { return open(t) }) })
	t.Run("Discounted", func(t *testing.T) { RunDiscounted(t, func(t *testing.T) counters.DiscStore { return open(t) }) })
	t.Run("Linear", func(t *testing.T) { RunLinear(t, func(t *testing.T) counters.LinearStore { return open(t) }) })
	t.Run("OffPolicy", func(t *testing.T) { RunOffPolicy(t, func(t *testing.T) offpolicy.Store { return open(t) }) })
	t.Run("Series", func(t *testing.T) { RunSeries(t, func(t *testing.T) Series { return open(t) }) })
	t.Run("Audit", func(t *testing.T) { RunAudit(t, func(t *testing.T) audit.Store { return open(t) }) })
	t.Run("Keys", func(t *testing.T) { RunKeys(t, func(t *testing.T) auth.Store { return open(t) }) })
	t.Run("Shadows", func(t *testing.T) {
		RunShadows(t, func(t *testing.T) ShadowStore { return open(t) })
	})
}

// incr is an Update mutation adding one to a decimal record.
func incr(cur []byte) ([]byte, error) {
	n, _ := strconv.Atoi(string(cur))
	return []byte(strconv.Itoa(n + 1)), nil
}

func list(t *testing.T, s registry.Store, b store.Bucket) map[string][]byte {
	t.Helper()
	m, err := s.List(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// RunRegistry tests registry.Store: Update is a compare-and-set on one
// record (concurrent updates all land; an error from the mutation changes
// nothing and comes back as it is; nil deletes), and List returns a
// bucket's records, the buckets apart.
func RunRegistry(t *testing.T, open func(t *testing.T) registry.Store) {
	ctx := context.Background()
	t.Run("create, read, delete", func(t *testing.T) {
		s := open(t)
		if m := list(t, s, store.Models); len(m) != 0 {
			t.Fatalf("a new store lists %q", m)
		}
		got, err := s.Update(ctx, store.Models, "mf@1", func(cur []byte) ([]byte, error) {
			if cur != nil {
				t.Errorf("a new record read as %q", cur)
			}
			return []byte(`{"a":1}`), nil
		})
		if err != nil || string(got) != `{"a":1}` {
			t.Fatalf("create: %q, %v", got, err)
		}
		got, err = s.Update(ctx, store.Models, "mf@1", func(cur []byte) ([]byte, error) {
			if string(cur) != `{"a":1}` {
				t.Errorf("the stored record read as %q", cur)
			}
			return []byte(`{"a":2}`), nil
		})
		if err != nil || string(got) != `{"a":2}` {
			t.Fatalf("change: %q, %v", got, err)
		}
		if _, err := s.Update(ctx, store.Endpoints, "home", func([]byte) ([]byte, error) { return []byte("{}"), nil }); err != nil {
			t.Fatal(err)
		}
		if m := list(t, s, store.Models); len(m) != 1 || string(m["mf@1"]) != `{"a":2}` {
			t.Fatalf("models = %q", m)
		}
		if m := list(t, s, store.Endpoints); len(m) != 1 || string(m["home"]) != "{}" {
			t.Fatalf("endpoints = %q", m)
		}
		refused := errors.New("refused")
		if _, err := s.Update(ctx, store.Models, "mf@1", func([]byte) ([]byte, error) { return nil, refused }); err != refused {
			t.Fatalf("the mutation's error came back as %v", err)
		}
		if m := list(t, s, store.Models); string(m["mf@1"]) != `{"a":2}` {
			t.Fatalf("a refused change changed the record to %q", m["mf@1"])
		}
		for _, what := range []string{"delete", "delete a missing record"} {
			if got, err := s.Update(ctx, store.Models, "mf@1", func([]byte) ([]byte, error) { return nil, nil }); err != nil || got != nil {
				t.Fatalf("%s: %q, %v", what, got, err)
			}
		}
		if m := list(t, s, store.Models); len(m) != 0 {
			t.Fatalf("after delete: %q", m)
		}
	})
	t.Run("concurrent updates all land", func(t *testing.T) {
		s := open(t)
		const writers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if _, err := s.Update(ctx, store.Endpoints, "n", incr); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if m := list(t, s, store.Endpoints); string(m["n"]) != strconv.Itoa(writers*each) {
			t.Fatalf("after %d concurrent increments the record is %q", writers*each, m["n"])
		}
	})
}

// RunMeta tests Meta: unset keys read as nil, SetMeta replaces, and the
// signing key is 32 bytes, created once: every caller, concurrent ones
// included, gets the same key.
func RunMeta(t *testing.T, open func(t *testing.T) Meta) {
	ctx := context.Background()
	t.Run("metadata", func(t *testing.T) {
		s := open(t)
		if v, err := s.Meta(ctx, "seeded/model/mf@1"); err != nil || v != nil {
			t.Fatalf("unset Meta = %q, %v; want nil, nil", v, err)
		}
		for _, val := range []string{"1", "2"} {
			if err := s.SetMeta(ctx, "seeded/model/mf@1", []byte(val)); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Meta(ctx, "seeded/model/mf@1"); err != nil || string(v) != val {
				t.Fatalf("Meta = %q, %v; want %q", v, err, val)
			}
		}
		if v, _ := s.Meta(ctx, "seeded/model/other"); v != nil {
			t.Fatalf("another key reads %q", v)
		}
	})
	t.Run("signing key created once", func(t *testing.T) {
		s := open(t)
		const callers = 6
		keys := make([][]byte, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := s.SigningKey(ctx)
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			}()
		}
		wg.Wait()
		again, err := s.SigningKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range append(keys, again) {
			if len(k) != 32 || string(k) != string(keys[0]) {
				t.Fatalf("call %d got key %x, call 0 %x", i, k, keys[0])
			}
		}
	})
}

var (
	kA = counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	kB = counters.Key{Endpoint: "home", Segment: "surface=music", Arm: "mf@2"}
)

// later is the expiry of the predictions the tests give feedback on: a
// prediction's events all share its expiry, the end of its window.
func later() time.Time { return time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) }

func click(ev, pred string, k counters.Key) store.FeedbackOp {
	return store.FeedbackOp{Prediction: pred, Event: "click\x00" + ev, Item: ev, Success: true, Counter: k, Expires: later()}
}

func impression(pred string, k counters.Key) store.FeedbackOp {
	return store.FeedbackOp{Prediction: pred, Event: "impression\x00", Trial: true, Counter: k, Expires: later()}
}

// reward is a reward event of pred on item worth units reward units.
func reward(item, pred string, units uint64, k counters.Key) store.FeedbackOp {
	return store.FeedbackOp{Prediction: pred, Event: "reward\x00" + item, Item: item, Reward: units, Counter: k, Expires: later()}
}

// limited is a click of pred on item, whose prediction accepts events for
// at most two distinct items.
func limited(item, pred string, k counters.Key) store.FeedbackOp {
	op := click(item, pred, k)
	op.MaxItems = 2
	return op
}

var (
	success   = store.FeedbackResult{Success: true}
	trial     = store.FeedbackResult{Trial: true}
	both      = store.FeedbackResult{Trial: true, Success: true}
	duplicate = store.FeedbackResult{Duplicate: true}
	tooMany   = store.FeedbackResult{TooMany: true}
	nothing   = store.FeedbackResult{}
)

// RunCounts tests the counts: AddTrials and ApplyFeedback add exactly,
// concurrent writers included; an event is counted once while its dedupe
// keys live (within one call and across calls), and a prediction's trial
// and success once whatever events carry them; a prediction accepts
// events for at most MaxItems distinct items; pending trials are applied
// with the feedback; and keys past their expiry (plus store.ExpiryGrace)
// are forgotten, after SweepExpired where the store needs it, while live
// ones are kept.
func RunCounts(t *testing.T, open func(t *testing.T) Counts) {
	ctx := context.Background()
	type call struct {
		ops     []store.FeedbackOp
		pending map[counters.Key]uint64
		trials  map[counters.Key]uint64 // an AddTrials call instead
		want    []store.FeedbackResult
	}
	tests := []struct {
		name  string
		calls []call
		want  map[counters.Key][2]uint64
	}{
		{"click, its repeat, another item, an impression, pending trials", []call{{
			ops:     []store.FeedbackOp{click("i1", "p1", kA), click("i1", "p1", kA), click("i2", "p1", kA), impression("p2", kA)},
			pending: map[counters.Key]uint64{kA: 5},
			want:    []store.FeedbackResult{success, duplicate, nothing, trial},
		}}, map[counters.Key][2]uint64{kA: {6, 1}}},
		{"repeat in a later call", []call{
			{ops: []store.FeedbackOp{click("i1", "p1", kA)}, want: []store.FeedbackResult{success}},
			{ops: []store.FeedbackOp{click("i1", "p1", kA), impression("p1", kA)}, want: []store.FeedbackResult{duplicate, trial}},
		}, map[counters.Key][2]uint64{kA: {1, 1}}},
		{"click and impression of one prediction under trials_on impression", []call{{
			ops: []store.FeedbackOp{
				{Prediction: "p3", Event: "click\x00i1", Item: "i1", Success: true, Trial: true, Counter: kB, Expires: later()},
				impression("p3", kB),
			},
			want: []store.FeedbackResult{both, nothing},
		}}, map[counters.Key][2]uint64{kB: {1, 1}}},
		{"trials only, zeros ignored", []call{
			{trials: map[counters.Key]uint64{kA: 3, kB: 0}},
			{pending: map[counters.Key]uint64{kB: 2}, want: []store.FeedbackResult{}},
			{trials: map[counters.Key]uint64{kA: 1}},
		}, map[counters.Key][2]uint64{kA: {4, 0}, kB: {2, 0}}},
		{"at most two distinct items of a prediction", []call{
			{ops: []store.FeedbackOp{limited("a", "p5", kA), limited("b", "p5", kA), limited("c", "p5", kA), limited("a", "p5", kA)},
				want: []store.FeedbackResult{success, nothing, tooMany, duplicate}},
			{ops: []store.FeedbackOp{limited("c", "p5", kA), limited("b", "p5", kA), limited("x", "p6", kA)},
				want: []store.FeedbackResult{tooMany, duplicate, success}},
		}, map[counters.Key][2]uint64{kA: {0, 2}}},
		{"an item limit: no item is not counted against it, a refused item is not remembered", []call{
			{ops: []store.FeedbackOp{limited("a", "p7", kA)}, want: []store.FeedbackResult{success}},
			{ops: []store.FeedbackOp{func() store.FeedbackOp {
				op := impression("p7", kA)
				op.MaxItems = 2
				return op
			}()}, want: []store.FeedbackResult{trial}},
			{ops: []store.FeedbackOp{limited("b", "p7", kA)}, want: []store.FeedbackResult{nothing}},
			{ops: []store.FeedbackOp{limited("c", "p7", kA)}, want: []store.FeedbackResult{tooMany}},
			{ops: []store.FeedbackOp{limited("c", "p7", kA)}, want: []store.FeedbackResult{tooMany}},
			{ops: []store.FeedbackOp{limited("b", "p7", kA)}, want: []store.FeedbackResult{duplicate}},
		}, map[counters.Key][2]uint64{kA: {1, 1}}},
		{"one call spanning endpoints, results in the ops' order", func() []call {
			kC := counters.Key{Endpoint: "search", Segment: "all", Arm: "mf@1"}
			kD := counters.Key{Endpoint: "related", Segment: "all", Arm: "mf@3"}
			return []call{
				{ops: []store.FeedbackOp{click("i1", "q1", kC), click("i1", "p1", kA), click("i1", "q1", kC), impression("r1", kD), click("i1", "p1", kA)},
					pending: map[counters.Key]uint64{kA: 2, kC: 3, kD: 4},
					want:    []store.FeedbackResult{success, success, duplicate, trial, duplicate}},
				{trials: map[counters.Key]uint64{kA: 1, kC: 1, kD: 1, kB: 1}},
				{ops: []store.FeedbackOp{click("i1", "q1", kC), click("i2", "r1", kD)}, want: []store.FeedbackResult{duplicate, success}},
			}
		}(), map[counters.Key][2]uint64{
			kA: {3, 1}, kB: {1, 0},
			{Endpoint: "search", Segment: "all", Arm: "mf@1"}:  {4, 1},
			{Endpoint: "related", Segment: "all", Arm: "mf@3"}: {6, 1},
		}},
		{"an event already past its expiry still counts once", []call{
			{ops: []store.FeedbackOp{{Prediction: "old", Success: true, Counter: kA, Expires: time.Now().Add(-time.Minute)}},
				want: []store.FeedbackResult{success}},
		}, map[counters.Key][2]uint64{kA: {0, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			for j, c := range tc.calls {
				if c.trials != nil {
					if err := s.AddTrials(ctx, c.trials); err != nil {
						t.Fatal(err)
					}
					continue
				}
				got, err := s.ApplyFeedback(ctx, c.ops, c.pending)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Errorf("call %d answered %+v, want %+v", j, got, c.want)
				}
			}
			if got := countsOf(t, s); !equalCounts(got, tc.want) {
				t.Errorf("counters %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("value rewards", func(t *testing.T) { runRewards(t, open) })

	t.Run("concurrent writers count exactly", func(t *testing.T) {
		s := open(t)
		// Every worker adds trials and sends the same events: each
		// prediction's click and impression count once, the trials all.
		const workers, rounds, preds = 6, 20, 5
		concurrently(t, workers, func(w int) error {
			for r := range rounds {
				if err := s.AddTrials(ctx, map[counters.Key]uint64{kA: 1, kB: 2}); err != nil {
					return err
				}
				p := fmt.Sprint("c", (w+r)%preds)
				ops := []store.FeedbackOp{click("i", p, kA), impression(p, kB)}
				if _, err := s.ApplyFeedback(ctx, ops, map[counters.Key]uint64{kB: 1}); err != nil {
					return err
				}
			}
			return nil
		})
		want := map[counters.Key][2]uint64{kA: {workers * rounds, preds}, kB: {3*workers*rounds + preds, 0}}
		if got := countsOf(t, s); !equalCounts(got, want) {
			t.Fatalf("counters %v, want %v", got, want)
		}
	})

	t.Run("expired keys are forgotten, live ones kept", func(t *testing.T) {
		s := open(t)
		now := time.Now()
		old := store.FeedbackOp{Prediction: "old", Success: true, Counter: kA, Expires: now.Add(-store.ExpiryGrace), Now: now}
		live := click("i", "live", kA)
		if res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{old, live}, nil); err != nil || fmt.Sprint(res) != fmt.Sprint([]store.FeedbackResult{success, success}) {
			t.Fatalf("first: %+v, %v", res, err)
		}
		if _, err := s.SweepExpired(ctx, 100); err != nil {
			t.Fatal(err)
		}
		if res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{live}, nil); err != nil || res[0] != duplicate {
			t.Fatalf("a live event sent again after a sweep: %+v, %v; want a duplicate", res, err)
		}
		// Redis expires keys by their TTL (at least a second), the
		// embedded store by its sweep: allow for either.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := s.SweepExpired(ctx, 100); err != nil {
				t.Fatal(err)
			}
			old.Now = time.Now()
			res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{old}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res[0] == success {
				break
			}
			if res[0] != duplicate || time.Now().After(deadline) {
				t.Fatalf("an expired event sent again: %+v; want it counted again once its keys are gone", res[0])
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got, want := countsOf(t, s), (map[counters.Key][2]uint64{kA: {0, 3}}); !equalCounts(got, want) {
			t.Fatalf("counters %v, want %v", got, want)
		}
	})
}

// concurrently runs f(0) … f(workers−1) at once and fails t with the first
// error any returns.
func concurrently(t *testing.T, workers int, f func(w int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(w); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// runRewards tests value rewards: a prediction's reward events add up to at
// most counters.RewardUnit, each adding what it raised the capped sum by;
// a repeated event (same prediction, type and item, whatever its units)
// is a duplicate; concurrent writers sending the same events count each
// once.
func runRewards(t *testing.T, open func(t *testing.T) Counts) {
	ctx := context.Background()
	const u = counters.RewardUnit
	rw := func(added, total uint64) store.FeedbackResult {
		return store.FeedbackResult{Reward: added, RewardTotal: total}
	}
	withTrial := func(op store.FeedbackOp) store.FeedbackOp { op.Trial = true; return op }
	tests := []struct {
		name    string
		calls   [][]store.FeedbackOp
		want    [][]store.FeedbackResult
		counts  map[counters.Key][2]uint64
		rewards map[counters.Key]uint64
	}{
		{"capped at one success, repeats are duplicates",
			[][]store.FeedbackOp{{reward("a", "v1", 4*u/10, kA), reward("a", "v1", 9*u/10, kA), reward("b", "v1", 7*u/10, kA), reward("c", "v1", 3*u/10, kA)}},
			[][]store.FeedbackResult{{rw(4*u/10, 4*u/10), duplicate, rw(6*u/10, u), rw(0, u)}},
			map[counters.Key][2]uint64{kA: {0, 0}}, map[counters.Key]uint64{kA: u}},
		{"across calls and predictions, with the trial of trials_on impression",
			[][]store.FeedbackOp{
				{withTrial(reward("a", "v2", u/4, kB))},
				{withTrial(reward("a", "v2", u/4, kB)), withTrial(reward("b", "v2", u/4, kB)), reward("", "v3", 3*u, kB)},
			},
			[][]store.FeedbackResult{
				{{Trial: true, Reward: u / 4, RewardTotal: u / 4}},
				{duplicate, rw(u/4, u/2), rw(u, u)},
			},
			map[counters.Key][2]uint64{kB: {1, 0}}, map[counters.Key]uint64{kB: u/2 + u}},
		{"a reward of 0 is accepted and adds nothing; clicks count apart",
			[][]store.FeedbackOp{{reward("a", "v4", 0, kA), reward("a", "v4", 0, kA), click("a", "v4", kA), reward("b", "v4", u/2, kA)}},
			[][]store.FeedbackResult{{nothing, duplicate, success, rw(u/2, u/2)}},
			map[counters.Key][2]uint64{kA: {0, 1}}, map[counters.Key]uint64{kA: u / 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			for j, ops := range tc.calls {
				got, err := s.ApplyFeedback(ctx, ops, nil)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want[j]) {
					t.Errorf("call %d answered %+v, want %+v", j, got, tc.want[j])
				}
			}
			if got := countsOf(t, s); !equalCounts(got, tc.counts) {
				t.Errorf("counters %v, want %v", got, tc.counts)
			}
			if got := Rewards(t, s); !maps.Equal(got, tc.rewards) {
				t.Errorf("reward units %v, want %v", got, tc.rewards)
			}
		})
	}

	t.Run("concurrent writers count each reward once", func(t *testing.T) {
		s := open(t)
		// Every worker sends every prediction's three rewards of 0.4: each
		// prediction fills its cap once, however the calls interleave.
		const workers, preds = 6, 5
		concurrently(t, workers, func(w int) error {
			for r := range preds {
				p := fmt.Sprint("cv", (w+r)%preds)
				ops := []store.FeedbackOp{reward("x", p, 4*u/10, kA), reward("y", p, 4*u/10, kA), reward("z", p, 4*u/10, kA)}
				if _, err := s.ApplyFeedback(ctx, ops, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if got, want := Rewards(t, s), (map[counters.Key]uint64{kA: preds * u}); !maps.Equal(got, want) {
			t.Fatalf("reward units %v, want %v", got, want)
		}
	})
}

// RunDiscounted tests counters.DiscStore: snapshots round-trip exactly,
// a later one replaces a cell's earlier one, and an empty put changes
// nothing.
func RunDiscounted(t *testing.T, open func(t *testing.T) counters.DiscStore) {
	ctx := context.Background()
	s := open(t)
	if got, err := s.LoadDiscounted(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a new store loads %+v, %v", got, err)
	}
	at := time.Date(2026, 12, 7, 12, 0, 0, 123456789, time.UTC)
	first := []counters.DiscEntry{
		{Key: kA, Disc: counters.Disc{Trials: 12.5, Successes: 0.25, At: at, RawTrials: 20, RawSuccesses: 1}},
		{Key: counters.Key{Endpoint: "home", Segment: "s=a\x00b", Arm: "mf@2"}, Disc: counters.Disc{Trials: 1e-300, Successes: 0, At: at.Add(-time.Hour), RawTrials: 1 << 62}},
	}
	if err := s.PutDiscounted(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDiscounted(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadDiscounted(ctx); err != nil || !equalDisc(got, first) {
		t.Fatalf("loaded %+v, %v; want %+v", got, err, first)
	}
	later := counters.DiscEntry{Key: kA, Disc: counters.Disc{Trials: 6.25, Successes: 0.125, At: at.Add(time.Hour), RawTrials: 20, RawSuccesses: 1}}
	if err := s.PutDiscounted(ctx, []counters.DiscEntry{later}); err != nil {
		t.Fatal(err)
	}
	want := []counters.DiscEntry{later, first[1]} // in key order
	if got, err := s.LoadDiscounted(ctx); err != nil || !equalDisc(got, want) {
		t.Fatalf("after replacing one: %+v, %v; want %+v", got, err, want)
	}
}

// RunLinear tests counters.LinearStore: deltas added at once by many
// writers (replicas) sum exactly, element by element, and keys apart —
// endpoints, arms and layouts — stay apart.
func RunLinear(t *testing.T, open func(t *testing.T) counters.LinearStore) {
	ctx := context.Background()
	s := open(t)
	if got, err := s.LoadLinear(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a new store loads %v, %v", got, err)
	}
	a := counters.LinKey{Endpoint: "home", Arm: "mf@1", Layout: 0x0badf00d}
	b := counters.LinKey{Endpoint: "home", Arm: "mf@1", Layout: 1}
	c := counters.LinKey{Endpoint: "search", Arm: "mf@2", Layout: 0x0badf00d}
	// d = 2: n, Σr, b (2), A upper (3).
	da := []float64{1, 0.25, 0.25, 0, 1, 0.5, 0.25}
	db := []float64{1, 1, 1, -1.5, 1, -1.5, 2.25}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := map[counters.LinKey][]float64{a: da}
				if (w+i)%2 == 0 {
					m[b] = db
				}
				if err := s.AddLinear(ctx, m); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.AddLinear(ctx, map[counters.LinKey][]float64{c: {1, 0, 0, 0, 1, 0, 0}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLinear(ctx, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadLinear(ctx)
	if err != nil {
		t.Fatal(err)
	}
	scale := func(v []float64, n float64) []float64 {
		out := make([]float64, len(v))
		for i := range v {
			out[i] = v[i] * n
		}
		return out
	}
	want := map[counters.LinKey][]float64{a: scale(da, writers*each), b: scale(db, writers*each/2), c: {1, 0, 0, 0, 1, 0, 0}}
	if len(got) != len(want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("%+v: loaded %v, want %v", k, got[k], w)
		}
	}
}

func minute(n float64, arms map[string]offpolicy.Sums) offpolicy.Minute {
	m := offpolicy.Minute{N: n, Arms: map[string]*offpolicy.Sums{}}
	for k, v := range arms {
		m.Arms[k] = &v
	}
	return m
}

// RunOffPolicy tests offpolicy.Store: buckets round-trip exactly and a
// later snapshot replaces a bucket's earlier one.
func RunOffPolicy(t *testing.T, open func(t *testing.T) offpolicy.Store) {
	ctx := context.Background()
	s := open(t)
	if got, err := s.LoadOffPolicy(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a new store loads %v, %v", got, err)
	}
	kAll := offpolicy.Key{Endpoint: "home", Segment: offpolicy.AggregateSeries, Minute: 1_700_000_040}
	kDay := offpolicy.Key{Endpoint: "home", Segment: offpolicy.DaySeries("s=a,t=b"), Minute: 1_699_920_000}
	first := map[offpolicy.Key]offpolicy.Minute{
		kAll: minute(3, map[string]offpolicy.Sums{"x": {Served: 2, Expected: 1.5, W: 4, W2: 8, RW: 2, RW2: 4}, "y": {Served: 1}}),
		kDay: minute(1, map[string]offpolicy.Sums{"y": {Served: 1, Expected: 0.5, W: 2, W2: 4}}),
	}
	if err := s.PutOffPolicy(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOffPolicy(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadOffPolicy(ctx); err != nil || !equalMinutes(got, first) {
		t.Fatalf("loaded %v, %v; want %v", got, err, first)
	}
	later := minute(5, map[string]offpolicy.Sums{"x": {Served: 4, Expected: 2, W: 6, W2: 10, RW: 2, RW2: 4}})
	if err := s.PutOffPolicy(ctx, map[offpolicy.Key]offpolicy.Minute{kAll: later}); err != nil {
		t.Fatal(err)
	}
	want := map[offpolicy.Key]offpolicy.Minute{kAll: later, kDay: first[kDay]}
	if got, err := s.LoadOffPolicy(ctx); err != nil || !equalMinutes(got, want) {
		t.Fatalf("after replacing one: %v, %v; want %v", got, err, want)
	}
}

func point(seg string, t int64) store.Record {
	return store.Record{Endpoint: "home", Segment: seg, Time: t, Value: []byte(strconv.FormatInt(t, 10))}
}

func timesOf(rs []store.Record) []int64 {
	out := []int64{}
	for _, r := range rs {
		out = append(out, r.Time)
	}
	return out
}

// RunSeries tests report.Series with the off-policy buckets it prunes: a
// history point is never overwritten (the first writer of a series and
// time wins), History returns a series' points with from ≤ time < to
// oldest first (a zero bound is open), and PruneSeries deletes what is
// older than the cutoff from both and thins older history points.
func RunSeries(t *testing.T, open func(t *testing.T) Series) {
	ctx := context.Background()
	t.Run("first writer wins; ranges", func(t *testing.T) {
		s := open(t)
		n, err := s.AddHistoryBatch(ctx, []store.Record{point("all", 120), point("all", 60), point("s=a,t=b", 60)})
		if err != nil || n != 3 {
			t.Fatalf("AddHistoryBatch = %d, %v; want 3", n, err)
		}
		again := point("all", 60)
		again.Value = []byte("overwritten")
		if n, err := s.AddHistoryBatch(ctx, []store.Record{again, point("all", 180)}); err != nil || n != 1 {
			t.Fatalf("AddHistoryBatch over an existing point = %d, %v; want 1 (the new one)", n, err)
		}
		if n, err := s.AddHistoryBatch(ctx, nil); err != nil || n != 0 {
			t.Fatalf("an empty batch = %d, %v", n, err)
		}
		all := []store.Record{point("all", 60), point("all", 120), point("all", 180)}
		tests := []struct {
			seg      string
			from, to int64
			want     []store.Record
		}{
			{"all", 0, 0, all},
			{"all", 60, 180, all[:2]},
			{"all", 61, 0, all[1:]},
			{"all", -5, 120, all[:1]},
			{"all", 200, 0, nil},
			{"s=a,t=b", 0, 0, []store.Record{point("s=a,t=b", 60)}},
			{"s=a", 0, 0, nil},
			{"none", 0, 0, nil},
		}
		for _, tc := range tests {
			got, err := s.History(ctx, "home", tc.seg, tc.from, tc.to)
			if err != nil || !equalRecords(got, tc.want) {
				t.Errorf("History(%q, %d, %d) = %s, %v; want %s", tc.seg, tc.from, tc.to, showRecords(got), err, showRecords(tc.want))
			}
		}
	})

	every := func(from, to, step int64) []int64 {
		out := []int64{}
		for ts := from; ts <= to; ts += step {
			out = append(out, ts)
		}
		return out
	}
	tests := []struct {
		name                        string
		cutoff, thinBefore, keep    int64
		wantDeleted                 int
		wantHistory, wantOffMinutes []int64
	}{
		{"nothing old", -1, -1, 0, 0, every(0, 1200, 60), every(0, 1200, 60)},
		{"cutoff only", 600, 0, 300, 2*10 + 10, every(600, 1200, 60), every(600, 1200, 60)},
		{"cutoff and thinning", 300, 900, 300, 2*(5+8) + 5,
			[]int64{300, 600, 900, 960, 1020, 1080, 1140, 1200}, every(300, 1200, 60)},
		{"thinning without keepEvery does nothing", 0, 900, 0, 0, every(0, 1200, 60), every(0, 1200, 60)},
		{"everything", 10_000, 10_000, 60, 2*21 + 21, []int64{}, []int64{}},
	}
	for _, tc := range tests {
		t.Run("prune: "+tc.name, func(t *testing.T) {
			s := open(t)
			// History every 60 s from 0 to 1200 in two series, and
			// off-policy minutes over the same range.
			var recs []store.Record
			ops := map[offpolicy.Key]offpolicy.Minute{}
			for _, seg := range []string{"all", "s=1"} {
				for ts := int64(0); ts <= 1200; ts += 60 {
					recs = append(recs, point(seg, ts))
				}
			}
			for ts := int64(0); ts <= 1200; ts += 60 {
				ops[offpolicy.Key{Endpoint: "home", Segment: "all", Minute: ts}] = minute(1, nil)
			}
			if _, err := s.AddHistoryBatch(ctx, recs); err != nil {
				t.Fatal(err)
			}
			if err := s.PutOffPolicy(ctx, ops); err != nil {
				t.Fatal(err)
			}
			n, err := s.PruneSeries(ctx, tc.cutoff, tc.thinBefore, tc.keep)
			if err != nil || n != tc.wantDeleted {
				t.Errorf("PruneSeries deleted %d, %v; want %d", n, err, tc.wantDeleted)
			}
			for _, seg := range []string{"all", "s=1"} {
				got, err := s.History(ctx, "home", seg, 0, 0)
				if err != nil || fmt.Sprint(timesOf(got)) != fmt.Sprint(tc.wantHistory) {
					t.Errorf("%q: history left %v, %v; want %v", seg, timesOf(got), err, tc.wantHistory)
				}
			}
			left, err := s.LoadOffPolicy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var mins []int64
			for ts := int64(0); ts <= 1200; ts += 60 {
				if _, ok := left[offpolicy.Key{Endpoint: "home", Segment: "all", Minute: ts}]; ok {
					mins = append(mins, ts)
				}
			}
			if len(left) != len(mins) || fmt.Sprint(mins) != fmt.Sprint(tc.wantOffMinutes) {
				t.Errorf("off-policy minutes left %v (%d), want %v", mins, len(left), tc.wantOffMinutes)
			}
			if n, err := s.PruneSeries(ctx, tc.cutoff, tc.thinBefore, tc.keep); err != nil || n != 0 {
				t.Errorf("a second prune deleted %d, %v", n, err)
			}
		})
	}
}

// RunAudit tests audit.Store: entries come back newest first, at most
// limit of them.
func RunAudit(t *testing.T, open func(t *testing.T) audit.Store) {
	ctx := context.Background()
	s := open(t)
	if got, err := s.ListAudit(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("a new store lists %q, %v", got, err)
	}
	for i := range 5 {
		raw, _ := json.Marshal(audit.Entry{Action: "put", Target: strconv.Itoa(i), Result: "ok"})
		if err := s.AppendAudit(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		limit int
		want  []string
	}{{10, []string{"4", "3", "2", "1", "0"}}, {2, []string{"4", "3"}}, {1, []string{"4"}}} {
		raws, err := s.ListAudit(ctx, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range raws {
			var e audit.Entry
			if err := json.Unmarshal(r, &e); err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Target)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ListAudit(%d) = %v, want %v", tc.limit, got, tc.want)
		}
	}
}

// RunKeys tests auth.Store: PutKey refuses a taken name, ListKeys returns
// the keys with their last use (TouchKeys; unknown names ignored), and
// DeleteKey reports whether the key existed.
func RunKeys(t *testing.T, open func(t *testing.T) auth.Store) {
	ctx := context.Background()
	s := open(t)
	_, h := auth.Generate()
	k := auth.Key{Name: "app1", Hash: h, Scopes: []string{"client"}, Rate: 10, Burst: 20, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	if err := s.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(ctx, k); !errors.Is(err, auth.ErrExists) {
		t.Fatalf("a taken name: %v, want auth.ErrExists", err)
	}
	used := time.Now().UTC().Truncate(time.Millisecond) // Redis keeps milliseconds
	if err := s.TouchKeys(ctx, map[string]time.Time{"app1": used, "ghost": used}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListKeys(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("ListKeys = %+v, %v; want app1 alone", all, err)
	}
	if g := all[0]; g.Name != "app1" || g.Hash != h || g.Burst != 20 || g.Rate != 10 || !g.CreatedAt.Equal(k.CreatedAt) || !g.LastUsed.Equal(used) {
		t.Fatalf("ListKeys = %+v, want %+v used at %v", g, k, used)
	}
	if ok, err := s.DeleteKey(ctx, "app1"); !ok || err != nil {
		t.Fatalf("DeleteKey = %v, %v", ok, err)
	}
	if ok, err := s.DeleteKey(ctx, "app1"); ok || err != nil {
		t.Fatalf("DeleteKey of a deleted key = %v, %v; want false", ok, err)
	}
	if all, _ := s.ListKeys(ctx); len(all) != 0 {
		t.Fatalf("after delete: %+v", all)
	}
}
