package router

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/registry"
)

func (f *fixture) fill(segment, arm string, trials, successes uint64) {
	f.table.Cell(counters.Key{Endpoint: "e", Segment: segment, Arm: arm}).AddDurable(trials, successes, 0)
	if segment != "all" {
		f.table.Cell(counters.Key{Endpoint: "e", Segment: counters.AggregateSegment, Arm: arm}).AddDurable(trials, successes, 0)
	}
}

type memLog struct {
	mu   sync.Mutex
	recs []*predlog.Record
}

func (l *memLog) Add(r *predlog.Record) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

// The propensity logged with each prediction is the probability with which
// the policy picks that arm: over many choices from a fixed posterior, each
// arm's selection frequency matches it. The router draws the arm from the
// very shares it logs, so an arm's count is Binomial(n, p) with p its
// propensity; the tolerance is 5σ = 5·√(p(1−p)/n), at most 0.0125 here: a
// two-sided normal tail of 5.7e-7 per arm (np > 2000), whatever the seed.
// (It was ±0.01 for every arm, only 4σ at p ≈ 0.5: 6e-5 per arm.)
func TestPropensitiesMatchSelectionFrequency(t *testing.T) {
	log := &memLog{}
	// trials_on impression keeps the posterior fixed while we sample it.
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2", "m@3"], "policy": {"trials_on": "impression", "min_share": 0.05}}`,
		Options{Observers: []Observer{NewPredictionLogObserver(log)}, Seed: 42})
	f.fill("all", "m@1", 200, 20)
	f.fill("all", "m@2", 200, 25)
	f.fill("all", "m@3", 50, 6)
	const n = 40000
	count := map[string]int{}
	prop := map[string]float64{}
	for i := 0; i < n; i++ {
		resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u", K: 1})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := f.signer.Verify(resp.PredictionID)
		if err != nil {
			t.Fatal(err)
		}
		count[resp.Arm]++
		prop[resp.Arm] = tok.Propensity
	}
	for arm, c := range count {
		freq, p := float64(c)/n, prop[arm]
		if tol := 5 * math.Sqrt(p*(1-p)/n); math.Abs(freq-p) > tol {
			t.Errorf("%s: chosen %.4f of the time, logged propensity %.4f (± %.4f)", arm, freq, p, tol)
		}
	}
	if len(log.recs) != n || log.recs[0].Propensity == 0 || log.recs[0].Segment != "all" || len(log.recs[0].Items) != 1 {
		t.Fatalf("prediction log: %d records, first %+v", len(log.recs), log.recs[0])
	}
}

// A new segment borrows the endpoint-wide posterior as its prior: its first
// choices follow the endpoint-wide winner instead of splitting evenly.
//
// Tolerances, for any seed (the logged propensities show the shares): with
// weight 0 every choice is m@2 with probability exactly 0.5, so the count is
// Binomial(400, 0.5) and [0.3, 0.7] is ±8σ (tail ~1e-15). With weight 50 the
// first choice is even and every later one picks m@1 with probability at
// most 0.012 (m@2's borrowed Beta(11, 41) against m@1's Beta(3.5, 48.5)):
// m@1 has mean ≤ 6 choices, and by the Chernoff bound more than 40 of them
// (a share below 0.9) has probability below 1e-18.
func TestNewSegmentFollowsEndpointWinner(t *testing.T) {
	for _, tc := range []struct {
		weight  string
		atLeast float64
		atMost  float64
	}{
		{"0", 0.3, 0.7},  // no borrowing: a fresh Beta(1,1) per arm
		{"50", 0.9, 1.0}, // borrowing: m@2's endpoint-wide lead carries over
	} {
		t.Run("weight "+tc.weight, func(t *testing.T) {
			f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "policy": {"segment_by": ["surface"], "min_share": 0,
				"trials_on": "impression", "segment_prior_weight": `+tc.weight+`}}`, Options{Seed: 7})
			f.fill("surface=home", "m@1", 3000, 150)
			f.fill("surface=home", "m@2", 3000, 600)
			won := 0
			for i := 0; i < 400; i++ {
				resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": "new"}})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Arm == "m@2" {
					won++
				}
			}
			share := float64(won) / 400
			t.Logf("m@2 got %.3f of a new segment's first 400 choices", share)
			if share < tc.atLeast || share > tc.atMost {
				t.Fatalf("m@2 got %.2f of a new segment's first choices, want %.2f..%.2f", share, tc.atLeast, tc.atMost)
			}
		})
	}
}

func TestStickyAssignment(t *testing.T) {
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "policy": {"type": "uniform", "sticky": {"ttl": "1h"}}}`, Options{Seed: 3})
	ctx := context.Background()
	first := map[string]string{}
	users := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for round := 0; round < 20; round++ {
		for _, u := range users {
			resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: u})
			if err != nil {
				t.Fatal(err)
			}
			if first[u] == "" {
				first[u] = resp.Arm
			} else if resp.Arm != first[u] {
				t.Fatalf("user %s moved from %s to %s", u, first[u], resp.Arm)
			}
		}
	}
	arms := map[string]bool{}
	for _, a := range first {
		arms[a] = true
	}
	if len(arms) != 2 {
		t.Fatalf("8 users all got %v: assignment is not random", first)
	}
	// A paused arm lets its users go.
	if _, err := f.reg.SetArmState(ctx, "e", "m@1", registry.Paused); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		resp, _ := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: u})
		if resp.Arm != "m@2" {
			t.Fatalf("user %s still served by the paused arm", u)
		}
	}
}

// An arm that fails or slows down past the endpoint's guardrails is paused
// within the window, with the reason recorded, and never resumed by itself.
func TestGuardrails(t *testing.T) {
	for _, tc := range []struct {
		mode, guard, want string
	}{
		{"fail", `{"max_error_rate": 0.5, "window": "10s", "min_requests": 5}`, "error rate"},
		{"lag", `{"max_p99_ms": 5, "window": "10s", "min_requests": 5}`, "p99 latency"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var f *fixture
			tripped := make(chan struct{}, 1)
			f = newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"type": "uniform", "guardrails": `+tc.guard+`}}`,
				Options{Seed: 5, OnGuardrail: func(endpoint, arm, reason string) {
					if _, err := f.reg.PauseArm(context.Background(), endpoint, arm, reason); err != nil {
						t.Error(err)
					}
					tripped <- struct{}{}
				}})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { f.r.RunGuardrails(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			f.scorers["m@1"].mode.Store(tc.mode)
			for i := 0; i < 60; i++ {
				if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"}); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-tripped:
			case <-time.After(5 * time.Second):
				t.Fatal("the guardrail did not pause the arm")
			}
			ep, _ := f.reg.Endpoint("e")
			if ep.ArmStates["m@1"] != registry.Paused || !strings.Contains(ep.ArmReasons["m@1"], tc.want) {
				t.Fatalf("m@1: %s, reason %q", ep.ArmStates["m@1"], ep.ArmReasons["m@1"])
			}
			if ep.ArmStates["m@2"] != registry.Active {
				t.Fatal("the healthy arm was paused too")
			}
			// The healthy arm keeps serving; the paused one stays paused.
			for i := 0; i < 20; i++ {
				resp, _ := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
				if resp.Arm != "m@2" {
					t.Fatal("a paused arm served")
				}
			}
			// A manual resume clears the reason.
			if ep, _ := f.reg.SetArmState(context.Background(), "e", "m@1", registry.Active); ep.ArmReasons["m@1"] != "" {
				t.Fatal("resume kept the guardrail's reason")
			}
		})
	}
}

// Discounted Thompson forgets: evidence older than many half-lives no
// longer decides, while recent evidence does.
//
// Each phase is 400 choices with a fixed share p for m@1: fresh evidence
// (600/2000 against 200/2000, 12 posterior standard deviations apart)
// gives p > 0.999, so a share below 0.95 (over 19 misses, expected < 0.4)
// has probability below 1e-20; 20 half-lives leave both posteriors at the
// prior, p = 0.5, and [0.25, 0.75] is ±10σ; the new evidence (30/300
// against 90/300, 6σ apart) gives p < 1e-9, so more than 20 picks of m@1
// cannot happen but for the one even choice before shares exist.
func TestDiscountedThompsonForgets(t *testing.T) {
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "policy": {"type": "discounted-thompson", "half_life": "1h", "min_share": 0, "trials_on": "impression"}}`, Options{Seed: 11})
	f.fill("all", "m@1", 2000, 600)
	f.fill("all", "m@2", 2000, 200)
	t0 := time.Now()
	share := func() float64 {
		won := 0
		for i := 0; i < 400; i++ {
			resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Arm == "m@1" {
				won++
			}
		}
		return float64(won) / 400
	}
	f.r.now = func() time.Time { return t0 }
	s := share()
	t.Logf("m@1's share: fresh evidence %.3f", s)
	if s < 0.95 {
		t.Fatalf("with fresh evidence m@1 gets %.2f, want ≥ 0.95", s)
	}
	f.r.now = func() time.Time { return t0.Add(20 * time.Hour) }
	s = share()
	t.Logf("m@1's share: after 20 half-lives %.3f", s)
	if s > 0.75 || s < 0.25 {
		t.Fatalf("after 20 half-lives m@1 still gets %.2f, want the evidence forgotten", s)
	}
	// New evidence, now in m@2's favour, decides.
	f.fill("all", "m@1", 300, 30)
	f.fill("all", "m@2", 300, 90)
	s = share()
	t.Logf("m@1's share: after new evidence %.3f", s)
	if s > 0.05 {
		t.Fatalf("after new evidence m@1 gets %.2f, want m@2 to win", s)
	}
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for us := 0; us < 5_000_000; us += 1 + us/50 {
		d := time.Duration(us) * time.Microsecond
		b := latBucket(d)
		if b < prev {
			t.Fatalf("bucket not monotone at %v", d)
		}
		prev = b
		if lo := latLower(b); lo > d || (b+1 < latBuckets && latLower(b+1) <= d) {
			t.Fatalf("%v in bucket %d [%v, %v)", d, b, lo, latLower(b+1))
		}
	}
}

// Guardrail pauses are applied by RunGuardrails, never by a goroutine of
// their own: with no loop running, a trip waits in the queue; a loop whose
// context has ended applies what is queued and returns.
func TestGuardrailTripsAreOwned(t *testing.T) {
	var f *fixture
	var paused []string
	f = newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"type": "uniform", "guardrails": {"max_error_rate": 0.5, "window": "10s", "min_requests": 5}}}`,
		Options{Seed: 5, OnGuardrail: func(endpoint, arm, reason string) {
			if _, err := f.reg.PauseArm(context.Background(), endpoint, arm, reason); err != nil {
				t.Error(err)
			}
			paused = append(paused, arm)
		}})
	f.scorers["m@1"].mode.Store("fail")
	for i := 0; i < 60; i++ {
		if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if ep, _ := f.reg.Endpoint("e"); ep.ArmStates["m@1"] == registry.Paused || len(paused) != 0 {
		t.Fatal("an arm was paused with no RunGuardrails running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.r.RunGuardrails(ctx) // returns: its context has ended
	if len(paused) != 1 || paused[0] != "m@1" {
		t.Fatalf("paused %v, want [m@1] once", paused)
	}
	if ep, _ := f.reg.Endpoint("e"); ep.ArmStates["m@1"] != registry.Paused {
		t.Fatal("the queued trip was not applied")
	}
}
