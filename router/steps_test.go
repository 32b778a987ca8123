package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/topk"
)

// observed is an Observer that keeps every outcome.
type observed struct {
	mu   sync.Mutex
	outs []Outcome
}

func (o *observed) Observe(_ context.Context, out Outcome) {
	o.mu.Lock()
	o.outs = append(o.outs, out)
	o.mu.Unlock()
}

// calls writes an outcome's model calls as "arm:class".
func calls(o Outcome) []string {
	var out []string
	for _, c := range o.Calls() {
		out = append(out, c.Arm+":"+c.Class)
	}
	return out
}

// Observers learn what each recommend call of a known endpoint did, served
// or not, and it is what the client and the token were told.
func TestObserversSeeWhatHappened(t *testing.T) {
	// m@1's posterior is far ahead: the policy chooses it (its share is 1
	// to within 10⁻¹⁰⁰).
	const skewed = `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"min_share": 0}}`
	cases := []struct {
		name      string
		endpoint  string
		modes     map[string]string
		cancelled bool
		wantErr   string // the fault's code, "canceled" for the client's context; "" when served
		wantCalls []string
		wantTrial bool
	}{
		{name: "the chosen arm serves", endpoint: `{"arms": ["m@1"]}`,
			wantCalls: []string{"m@1:"}, wantTrial: true},
		{name: "trials counted on impressions", endpoint: `{"arms": ["m@1"], "policy": {"trials_on": "impression"}}`,
			wantCalls: []string{"m@1:"}},
		{name: "the fallback serves", endpoint: skewed, modes: map[string]string{"m@1": "fail"},
			wantCalls: []string{"m@1:unavailable", "m@2:"}, wantTrial: true},
		{name: "no arm serves", endpoint: skewed, modes: map[string]string{"m@1": "fail", "m@2": "slow"},
			wantErr: "no_healthy_arm", wantCalls: []string{"m@1:unavailable", "m@2:deadline"}},
		{name: "the input is refused", endpoint: `{"arms": ["m@1"]}`, modes: map[string]string{"m@1": "reject"},
			wantErr: "model_rejected_input", wantCalls: []string{"m@1:rejected_input"}},
		{name: "the client went away", endpoint: skewed, modes: map[string]string{"m@1": "slow"}, cancelled: true,
			wantErr: "canceled", wantCalls: []string{"m@1:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := &observed{}
			f := newFixtureOpt(t, tc.endpoint, Options{Observers: []Observer{obs}})
			f.fill("all", "m@1", 1000, 900)
			f.fill("all", "m@2", 1000, 10)
			// A first request admits the segment, whose shares are then
			// the posteriors' from the next one on.
			if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"}); err != nil {
				t.Fatal(err)
			}
			obs.outs = nil
			for arm, m := range tc.modes {
				f.scorers[arm].mode.Store(m)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancelled {
				cancel()
			}
			defer cancel()
			resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u", K: 3})
			if _, err := f.r.Recommend(ctx, &Request{Endpoint: "nope", UserID: "u"}); err == nil {
				t.Fatal("an unknown endpoint served")
			}
			if len(obs.outs) != 1 {
				t.Fatalf("%d outcomes, want 1 (none for an unknown endpoint)", len(obs.outs))
			}
			o := obs.outs[0]
			if !slices.Equal(calls(o), tc.wantCalls) {
				t.Errorf("calls %v, want %v", calls(o), tc.wantCalls)
			}
			if o.Endpoint != "e" || o.Chosen != 0 || !slices.Equal(o.Arms, f.reg.Snapshot().Endpoints["e"].Arms) ||
				o.Latency <= 0 || o.Trial != tc.wantTrial || !errors.Is(o.Err, err) {
				t.Errorf("outcome %+v for error %v", o, err)
			}
			if tc.wantErr != "" {
				switch fe := fault.As(err); {
				case tc.wantErr == "canceled" && !errors.Is(err, context.Canceled),
					tc.wantErr != "canceled" && (fe == nil || fe.Code != tc.wantErr):
					t.Fatalf("error %v, want %s", err, tc.wantErr)
				}
				if o.Served != -1 || o.PredictionID != "" || o.Items != nil || o.Segment != "all" {
					t.Errorf("a failed call's outcome %+v", o)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := f.signer.Verify(resp.PredictionID)
			if err != nil {
				t.Fatal(err)
			}
			if o.PredictionID != resp.PredictionID || o.Arms[o.Served] != resp.Arm || o.Fallback != resp.Fallback ||
				o.Segment != resp.Segment || len(o.Items) != len(resp.Items) || o.Propensity != tok.Propensity ||
				o.Time.UnixMilli() != tok.Time.UnixMilli() || len(o.Shares) != len(o.Arms) || o.Propensity != o.Shares[o.Served] {
				t.Errorf("outcome %+v, response %+v, token %+v", o, resp, tok)
			}
		})
	}
}

// The choose step draws from the active arms, and a user's sticky
// assignment holds while its arm is active.
func TestChoose(t *testing.T) {
	cases := []struct {
		name       string
		paused     []string
		stickyArm  string // assigned to user u before the choice, with propensity 0.4
		wantChosen int
		wantProp   float64
		wantSticky bool
	}{
		{name: "no active arm", paused: []string{"m@1", "m@2"}, wantChosen: -1},
		{name: "one active arm", paused: []string{"m@1"}, wantChosen: 1, wantProp: 1},
		{name: "sticky assignment", stickyArm: "m@2", wantChosen: 1, wantProp: 0.4, wantSticky: true},
		{name: "sticky arm paused", stickyArm: "m@2", paused: []string{"m@2"}, wantChosen: 0, wantProp: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, `{"arms": ["m@1", "m@2"], "policy": {"sticky": {"ttl": "1h"}}}`)
			for _, arm := range tc.paused {
				if _, err := f.reg.PauseArm(context.Background(), "e", arm, "test"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.stickyArm != "" {
				f.r.sticky.put("e", "u", tc.stickyArm, 0.4, time.Now().Add(time.Hour))
			}
			snap := f.reg.Snapshot()
			var buf [16]bandit.Arm
			c, arms := f.r.choose(context.Background(), snap, snap.Endpoints["e"], &Request{Endpoint: "e", UserID: "u"}, buf[:0])
			if c.chosen != tc.wantChosen || c.prop != tc.wantProp || c.sticky != tc.wantSticky || c.segment != "all" || len(arms) != 2 {
				t.Fatalf("choice %+v, want arm %d with propensity %v (sticky %v)", c, tc.wantChosen, tc.wantProp, tc.wantSticky)
			}
			if c.chosen >= 0 && !c.sticky && c.shares[c.chosen] != c.prop {
				t.Fatalf("shares %v, propensity %v", c.shares, c.prop)
			}
		})
	}
}

// A request's inputs: candidates without the excluded ones, k defaulted.
func TestNewInput(t *testing.T) {
	cases := []struct {
		name      string
		req       Request
		wantCands []string
		wantK     int
	}{
		{name: "nothing given", req: Request{UserID: "u"}, wantK: topk.Default},
		{name: "exclude only", req: Request{Exclude: []string{"a"}, K: 3}, wantK: 3},
		{name: "candidates without the excluded", req: Request{Candidates: []string{"a", "b", "c"}, Exclude: []string{"b", "x"}, K: 2},
			wantCands: []string{"a", "c"}, wantK: 2},
		{name: "everything excluded", req: Request{Candidates: []string{"a"}, Exclude: []string{"a"}}, wantCands: []string{}, wantK: topk.Default},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := newInput(&tc.req)
			if !slices.Equal(in.cands, tc.wantCands) || (in.cands == nil) != (tc.wantCands == nil) ||
				!slices.Equal(in.freq.Candidates, in.cands) || in.k != tc.wantK || len(in.excl) != len(tc.req.Exclude) {
				t.Fatalf("input %+v", in)
			}
		})
	}
}

// A request no arm served fails with the first refusal of its input, or
// else as no_healthy_arm.
func TestUnserved(t *testing.T) {
	refused := fmt.Errorf("m@2: %w", backend.RejectInput(nil, "bad shape"))
	cases := []struct {
		name     string
		calls    []Call
		lastErr  error
		wantCode string
		wantMsg  string
	}{
		{name: "no call", wantCode: "no_healthy_arm", wantMsg: "no fallback is available"},
		{name: "arm failures", calls: []Call{{Arm: "m@1", Class: "unavailable"}}, lastErr: errors.New("m@1: down"),
			wantCode: "no_healthy_arm", wantMsg: "last error: m@1: down"},
		{name: "a refusal", calls: []Call{{Arm: "m@1", Class: "unavailable"}, {Arm: "m@2", Class: backend.ClassRejected, Err: refused}},
			lastErr: refused, wantCode: "model_rejected_input", wantMsg: "model m@2 rejected the request's input: bad shape"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serving{served: -1}
			s.ncalls = copy(s.calls[:], tc.calls)
			fe := fault.As(unserved(&s, tc.lastErr))
			if fe == nil || fe.Code != tc.wantCode || !strings.Contains(fe.Error(), tc.wantMsg) {
				t.Fatalf("error %v, want %s with %q", fe, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

type memSums struct {
	endpoint, segment string
	at                time.Time
	shares            []float64
	served            int
	p                 float64
	n                 int
}

func (m *memSums) Served(endpoint, segment string, at time.Time, _ []string, shares []float64, served int, p float64) {
	m.endpoint, m.segment, m.at, m.shares, m.served, m.p = endpoint, segment, at, shares, served, p
	m.n++
}

// The prediction log and the off-policy sums get served predictions only.
func TestPredictionObservers(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	served := Outcome{Endpoint: "e", Segment: "s=a", Arms: []string{"m@1", "m@2"}, Shares: []float64{0.3, 0.7}, Chosen: 0,
		Served: 1, Propensity: 0.7, Fallback: true, Sticky: true, PredictionID: "tok", Time: at,
		Items: []backend.Item{{ID: "a"}, {ID: "b"}}}
	failed := Outcome{Endpoint: "e", Segment: "s=a", Arms: []string{"m@1"}, Chosen: 0, Served: -1, Err: errors.New("down")}
	for _, tc := range []struct {
		name string
		o    Outcome
		want int
	}{{"served", served, 1}, {"failed", failed, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			log, sums := &memLog{}, &memSums{}
			for _, ob := range []Observer{NewPredictionLogObserver(log), NewOffPolicyObserver(sums)} {
				ob.Observe(context.Background(), tc.o)
			}
			if len(log.recs) != tc.want || sums.n != tc.want {
				t.Fatalf("%d records, %d sums, want %d", len(log.recs), sums.n, tc.want)
			}
			if tc.want == 0 {
				return
			}
			want := predlog.Record{PredictionID: "tok", Time: at.UTC(), Endpoint: "e", Segment: "s=a", Arm: "m@2",
				Propensity: 0.7, Fallback: true, Sticky: true, Items: []string{"a", "b"}}
			if got := *log.recs[0]; fmt.Sprint(got) != fmt.Sprint(want) || got.Time.Location() != time.UTC {
				t.Errorf("record %+v, want %+v", got, want)
			}
			if sums.endpoint != "e" || sums.segment != "s=a" || !sums.at.Equal(at) || sums.served != 1 || sums.p != 0.7 || !slices.Equal(sums.shares, served.Shares) {
				t.Errorf("sums %+v", sums)
			}
		})
	}
}
