package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
)

// A pinned request is served by its arm, paused or not, with no fallback,
// and counts nowhere: no trial, no segment, no off-policy sums; its token
// and response say it was pinned.
func TestPinnedArm(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		pin    string
		mode   string // of m@2's scorer
		code   string // the error, "" when m@2 serves
		paused bool
	}{
		{"an active arm", "m@2", "ok", "", false},
		{"a paused arm", "m@2", "ok", "", true},
		{"a failing arm: no fallback", "m@2", "fail", "no_healthy_arm", false},
		{"an input the arm refuses", "m@2", "reject", "model_rejected_input", false},
		{"not an arm of the endpoint", "m@3", "ok", "invalid_arm", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ob := &observed{}
			f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@1", "policy": {"segment_by": ["surface"]}}`, Options{Observers: []Observer{ob}})
			f.scorers["m@2"].mode.Store(tc.mode)
			if tc.paused {
				if _, err := f.reg.SetArmState(ctx, "e", "m@2", registry.Paused); err != nil {
					t.Fatal(err)
				}
			}
			req := &Request{Endpoint: "e", UserID: "qa", Context: map[string]string{"surface": "music"}, Pin: tc.pin}
			resp, err := f.r.Recommend(ctx, req)
			if tc.code != "" {
				if fe := fault.As(err); fe == nil || fe.Code != tc.code {
					t.Fatalf("got %v, want %s", err, tc.code)
				}
				if f.scorers["m@1"].calls.Load() != 0 {
					t.Fatal("the fallback arm was called for a pinned request")
				}
				return
			}
			if err != nil || resp.Arm != "m@2" || !resp.Pinned || len(resp.Items) == 0 {
				t.Fatalf("got %+v, %v; want m@2, pinned", resp, err)
			}
			tok, err := f.signer.Verify(resp.PredictionID)
			if err != nil || !tok.Pinned || tok.Arm != "m@2" {
				t.Fatalf("token %+v, %v; want pinned m@2", tok, err)
			}
			for _, seg := range []string{"surface=music", counters.AggregateSegment} {
				if got := f.trials("m@2", seg); got != 0 {
					t.Errorf("%d trials of m@2 in %s; want none", got, seg)
				}
			}
			if f.table.Known("e", "surface=music") {
				t.Error("a pinned request admitted its segment")
			}
			if len(ob.outs) != 1 || !ob.outs[0].Pinned || ob.outs[0].Trial {
				t.Errorf("observers saw %+v; want one pinned outcome, no trial", ob.outs)
			}
			// A request without the pin is the policy's again.
			if resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u"}); err != nil || resp.Pinned {
				t.Fatalf("unpinned: %+v, %v", resp, err)
			}
		})
	}
}

// The off-policy sums (and with them the sample-ratio check) never see a
// pinned prediction.
func TestOffPolicySkipsPinned(t *testing.T) {
	var got int
	ob := NewOffPolicyObserver(offPolicyFunc(func() { got++ }))
	ob.Observe(context.Background(), Outcome{Served: 0, Pinned: true, Arms: []string{"a"}, Shares: []float64{1}})
	ob.Observe(context.Background(), Outcome{Served: 0, Arms: []string{"a"}, Shares: []float64{1}})
	if got != 1 {
		t.Fatalf("%d predictions in the sums, want 1 (the unpinned one)", got)
	}
}

type offPolicyFunc func()

func (f offPolicyFunc) Served(string, string, time.Time, []string, []float64, int, float64) { f() }

func TestCheckPin(t *testing.T) {
	snap := &registry.Snapshot{Versions: map[string]*registry.Version{
		"m@1": {Scorer: &scorer{}},
		"m@2": {LoadErr: errors.New("items.npy: no such file")},
	}}
	ep := &registry.Endpoint{Name: "e", Arms: []string{"m@1", "m@2"}}
	for _, tc := range []struct{ pin, code string }{
		{"", ""},
		{"m@1", ""},
		{"m@2", "no_healthy_arm"}, // failed to load: nothing to call
		{"m@3", "invalid_arm"},
	} {
		err := checkPin(snap, ep, tc.pin)
		if got := ""; err != nil {
			if fe := fault.As(err); fe != nil {
				got = fe.Code
			}
			if got != tc.code {
				t.Errorf("pin %q: %v, want %s", tc.pin, err, tc.code)
			}
		} else if tc.code != "" {
			t.Errorf("pin %q accepted, want %s", tc.pin, tc.code)
		}
	}
}

// A batch's pin is the call's: a bad one is the whole call's error.
func TestRecommendBatchBadPin(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1"]}`)
	_, _, err := f.r.RecommendBatch(context.Background(), "e", batchOf(3, func(_ int, r *Request) { r.Pin = "m@2" }))
	if fe := fault.As(err); fe == nil || fe.Code != "invalid_arm" {
		t.Fatalf("got %v, want the whole call's invalid_arm", err)
	}
}
