package report

import (
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/registry"
)

func endpoint(segmentBy ...string) *registry.Endpoint {
	p := registry.DefaultPolicy()
	p.SegmentBy = segmentBy
	return &registry.Endpoint{Name: "home", Arms: []string{"mf@1", "mf@2"},
		ArmStates: map[string]registry.ArmState{"mf@1": registry.Active, "mf@2": registry.Active}, Policy: p}
}

func fill(tb *counters.Table, segment, arm string, trials, successes uint64) {
	tb.Cell(counters.Key{Endpoint: "home", Segment: segment, Arm: arm}).AddDurable(trials, successes, 0)
}

func TestDecision(t *testing.T) {
	cases := []struct {
		name       string
		counts     [2][2]uint64 // per arm: trials, successes
		paused     string
		wantStatus string
		wantArm    string
		wantLow    bool
	}{
		{"no data", [2][2]uint64{}, "", "keep_running", "", true},
		{"clear winner", [2][2]uint64{{2000, 200}, {2000, 300}}, "", "winner", "mf@2", false},
		{"too few trials", [2][2]uint64{{100, 10}, {100, 40}}, "", "keep_running", "", true},
		{"too close to call", [2][2]uint64{{2000, 200}, {2000, 205}}, "", "keep_running", "", false},
		{"the leader is paused", [2][2]uint64{{2000, 200}, {2000, 300}}, "mf@2", "winner", "mf@1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := &counters.Table{}
			ep := endpoint()
			if tc.paused != "" {
				ep.ArmStates[tc.paused] = registry.Paused
			}
			fill(tb, "all", "mf@1", tc.counts[0][0], tc.counts[0][1])
			fill(tb, "all", "mf@2", tc.counts[1][0], tc.counts[1][1])
			r := Build(Input{Endpoint: ep, Table: tb, Available: nil, Segment: "", Now: time.Now()})
			got := ""
			if r.Decision.Arm != nil {
				got = *r.Decision.Arm
			}
			if r.Decision.Status != tc.wantStatus || got != tc.wantArm {
				t.Fatalf("decision %s %q, want %s %q (value remaining %.4f)", r.Decision.Status, got, tc.wantStatus, tc.wantArm, r.Decision.ValueRemaining)
			}
			low := len(r.Health.Warnings) == 1 && r.Health.Warnings[0] == "low_traffic"
			if low != tc.wantLow {
				t.Fatalf("warnings %v, want low_traffic=%v", r.Health.Warnings, tc.wantLow)
			}
			var share float64
			for _, a := range r.Arms {
				share += a.TrafficShare
				if a.CI95[0] > a.Rate || a.Rate > a.CI95[1] {
					t.Fatalf("%s: rate %.4f outside ci95 %v", a.Arm, a.Rate, a.CI95)
				}
			}
			if share < 0.999 || share > 1.001 {
				t.Fatalf("traffic shares sum to %.4f", share)
			}
		})
	}
}

func TestUnavailableArmGetsNoShare(t *testing.T) {
	tb := &counters.Table{}
	fill(tb, "all", "mf@1", 100, 10)
	fill(tb, "all", "mf@2", 100, 30)
	r := Build(Input{Endpoint: endpoint(), Table: tb, Available: func(arm string) bool { return arm != "mf@2" }, Segment: "", Now: time.Now()})
	if a := r.Arms[1]; a.State != "unavailable" || a.TrafficShare != 0 || a.PBest != 0 {
		t.Fatalf("unavailable arm: %+v", a)
	}
	if a := r.Arms[0]; a.State != "active" || a.TrafficShare != 1 {
		t.Fatalf("the only available arm: %+v", a)
	}
}

func TestSegments(t *testing.T) {
	tb := &counters.Table{}
	ep := endpoint("surface")
	fill(tb, "surface=music", "mf@1", 10, 1)
	fill(tb, "surface=music", "mf@2", 20, 5)
	fill(tb, "surface=home", "mf@1", 30, 3)
	all := Build(Input{Endpoint: ep, Table: tb, Available: nil, Segment: "all", Now: time.Now()})
	if all.Segment != "all" || all.Arms[0].Trials != 40 || all.Arms[1].Trials != 20 || all.Arms[0].Successes != 4 {
		t.Fatalf("aggregate: %+v", all.Arms)
	}
	if len(all.Segments) != 2 || all.Segments[0] != "surface=home" || all.Segments[1] != "surface=music" {
		t.Fatalf("segments: %v", all.Segments)
	}
	music := Build(Input{Endpoint: ep, Table: tb, Available: nil, Segment: "surface=music", Now: time.Now()})
	if music.Arms[0].Trials != 10 || music.Arms[1].Trials != 20 || music.Arms[1].Successes != 5 {
		t.Fatalf("one segment: %+v", music.Arms)
	}
	if r := Build(Input{Endpoint: ep, Table: tb, Available: nil, Segment: "surface=none", Now: time.Now()}); r.Arms[0].Trials != 0 || r.Arms[0].Rate != 0.5 {
		t.Fatalf("unseen segment should report the prior: %+v", r.Arms[0])
	}
}

func TestGuardrailWarning(t *testing.T) {
	ep := endpoint()
	ep.ArmStates["mf@2"] = registry.Paused
	ep.ArmReasons = map[string]string{"mf@2": "paused by guardrail: error rate 0.600 over the last 1m0s (30 of 50 calls) exceeds max_error_rate 0.200"}
	r := Build(Input{Endpoint: ep, Table: &counters.Table{}, Available: nil, Segment: "", Now: time.Now()})
	found := false
	for _, w := range r.Health.Warnings {
		found = found || w == "paused_by_guardrail: mf@2"
	}
	if !found || r.Arms[1].Reason == "" || r.Arms[1].State != "paused" {
		t.Fatalf("warnings %v, arm %+v", r.Health.Warnings, r.Arms[1])
	}
}

// Two equal arms: the stop rule keeps running while the value remaining in
// exploring is large, and calls it (on value remaining, P(best) being
// stuck near 1/2) once enough data makes the difference negligible.
func TestStopRuleEqualArms(t *testing.T) {
	for _, tc := range []struct {
		trials     uint64
		wantStatus string
	}{
		{500, "keep_running"},
		{20000, "keep_running"},
		{2000000, "winner"},
	} {
		tb := &counters.Table{}
		fill(tb, "all", "mf@1", tc.trials, tc.trials/10)
		fill(tb, "all", "mf@2", tc.trials, tc.trials/10)
		r := Build(Input{Endpoint: endpoint(), Table: tb, Now: time.Now()})
		if r.Decision.Status != tc.wantStatus {
			t.Fatalf("%d trials each: %s (value remaining %.4f), want %s", tc.trials, r.Decision.Status, r.Decision.ValueRemaining, tc.wantStatus)
		}
		if tc.wantStatus == "winner" && (r.Decision.Reason == nil || *r.Decision.Reason != "value_remaining") {
			t.Fatalf("reason %v, want value_remaining", r.Decision.Reason)
		}
	}
}
