package router

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
)

// Whose fault is a failed model call: a refused input is the request's
// (rejected_input: fallback, else 400), a non-finite score the model's
// (bad_output: fallback, else 503); never a response with such a score.
func TestFailedCallFault(t *testing.T) {
	cases := []struct {
		name      string
		modes     map[string]string
		wantArm   string // "" when no arm serves
		wantKind  fault.Kind
		wantCode  string
		wantClass string // the class m@1's failures are counted under
	}{
		{name: "m@1 rejects the input, m@2 serves", modes: map[string]string{"m@1": "reject"},
			wantArm: "m@2", wantClass: backend.ClassRejected},
		{name: "every arm rejects the input", modes: map[string]string{"m@1": "reject", "m@2": "reject"},
			wantKind: fault.Invalid, wantCode: "model_rejected_input", wantClass: backend.ClassRejected},
		{name: "one rejects, the other is down", modes: map[string]string{"m@1": "reject", "m@2": "fail"},
			wantKind: fault.Invalid, wantCode: "model_rejected_input", wantClass: backend.ClassRejected},
		{name: "m@1 scores +Inf, m@2 serves", modes: map[string]string{"m@1": "inf"},
			wantArm: "m@2", wantClass: backend.ClassBadOutput},
		{name: "m@1 scores NaN, m@2 serves", modes: map[string]string{"m@1": "nan"},
			wantArm: "m@2", wantClass: backend.ClassBadOutput},
		{name: "every arm scores +Inf", modes: map[string]string{"m@1": "inf", "m@2": "inf"},
			wantKind: fault.Unavailable, wantCode: "no_healthy_arm", wantClass: backend.ClassBadOutput},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"type": "uniform"}}`, Options{Seed: 3})
			for arm, m := range tc.modes {
				f.scorers[arm].mode.Store(m)
			}
			const n = 40
			for i := 0; i < n; i++ {
				resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
				if tc.wantCode != "" {
					fe := fault.As(err)
					if fe == nil || fe.Code != tc.wantCode || fe.Kind != tc.wantKind {
						t.Fatalf("got %v, %v; want %s", resp, err, tc.wantCode)
					}
					if tc.wantCode == "model_rejected_input" {
						msg := fe.Message
						if !utf8.ValidString(msg) || !strings.Contains(msg, "a"+strings.Repeat("é", 99)) ||
							strings.Contains(msg, "!") || !strings.HasPrefix(msg, "model m@") {
							t.Fatalf("message %q: want the arm and the backend's message cut to 200 bytes", msg)
						}
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if resp.Arm != tc.wantArm {
					t.Fatalf("served by %s, want %s", resp.Arm, tc.wantArm)
				}
				if resp.PredictionID == "" || len(resp.Items) == 0 {
					t.Fatalf("served %+v", resp)
				}
			}
			wantTrials := uint64(0)
			if tc.wantArm != "" {
				wantTrials = n
			}
			if got := f.trials("m@1", "all") + f.trials("m@2", "all"); got != wantTrials {
				t.Errorf("%d trials counted, want %d (none for a request nobody served)", got, wantTrials)
			}
			errs := f.r.Errors().Of("e")["m@1"]
			if errs[tc.wantClass] == 0 || len(errs) != 1 {
				t.Errorf("m@1 errors %v, want only %s", errs, tc.wantClass)
			}
		})
	}
}

// A refused input never feeds the guardrail, so however often it happens
// the arm is not paused; a sick arm's failures do feed it.
func TestRejectedInputNeverFeedsGuardrail(t *testing.T) {
	trips := make(chan string, 10)
	f := newFixtureOpt(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"type": "uniform",
		"guardrails": {"max_error_rate": 0.1, "window": "1h", "min_requests": 5}}}`,
		Options{Seed: 5, OnGuardrail: func(_, arm, _ string) { trips <- arm }})
	f.scorers["m@1"].mode.Store("reject")
	for i := 0; i < 100; i++ {
		if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.r.Errors().Of("e")["m@1"][backend.ClassRejected]; n < 20 {
		t.Fatalf("m@1 refused %d inputs in 100 uniform requests, want about 50", n)
	}
	// The guardrail keeps state for an arm from the first call it is fed.
	if _, ok := f.r.guards.Load(guardKey{"e", "m@1"}); ok {
		t.Fatal("the guardrail was fed calls of an arm that only refused inputs")
	}
	if _, ok := f.r.guards.Load(guardKey{"e", "m@2"}); !ok {
		t.Fatal("the guardrail saw no calls of m@2: it is not in effect")
	}
	if ep, _ := f.reg.Endpoint("e"); ep.ArmStates["m@1"] != registry.Active {
		t.Fatalf("m@1 is %s after refusing inputs", ep.ArmStates["m@1"])
	}
	select {
	case arm := <-trips:
		t.Fatalf("the guardrail tripped for %s", arm)
	default:
	}

	// Control: the same arm failing as a sick model trips it (the trip
	// decision is synchronous; the pause itself runs in its own goroutine).
	f.scorers["m@1"].mode.Store("fail")
	for i := 0; i < 100; i++ {
		if _, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if g, ok := f.r.guards.Load(guardKey{"e", "m@1"}); !ok || g.(*armGuard).tripped.Load() == 0 {
		t.Fatal("a failing arm did not trip the guardrail: the control failed")
	}
}
