package router

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
)

// Segment values come from clients: past max_segments every new value is
// served in "other", and the router keeps state for max_segments segments
// (plus other and the endpoint-wide cells), however many values arrive.
func TestSegmentsAreBounded(t *testing.T) {
	cases := []struct {
		name   string
		max    int
		values int
	}{
		{"under the cap", 50, 20},
		{"at the cap", 50, 50},
		{"adversarial", 50, 5000},
		{"cap of one", 1, 300},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fmt.Sprintf(`{"arms": ["m@1", "m@2"], "policy": {"segment_by": ["surface"], "max_segments": %d}}`, tc.max))
			other := 0
			for i := 0; i < tc.values; i++ {
				resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u",
					Context: map[string]string{"surface": fmt.Sprintf("s%d", i)}})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Segment == counters.OtherSegment {
					other++
				} else if want := fmt.Sprintf("surface=s%d", i); resp.Segment != want {
					t.Fatalf("request %d served in %q, want %q", i, resp.Segment, want)
				}
			}
			if want := max(0, tc.values-tc.max); other != want {
				t.Fatalf("%d requests overflowed, want %d", other, want)
			}
			if n := f.table.SegmentCount("e"); n != min(tc.values, tc.max) {
				t.Fatalf("table keeps %d named segments, want %d", n, min(tc.values, tc.max))
			}
			// Cells: one per served (segment, arm), at most 2 arms × (max + other) plus the aggregate.
			if n, limit := len(f.table.Entries("e")), 2*(tc.max+1)+2; n > limit {
				t.Fatalf("%d cells for %d segment values, want ≤ %d", n, tc.values, limit)
			}
			segStates := 0
			f.r.segs.Range(func(any, any) bool { segStates++; return true })
			if limit := tc.max + 2; segStates > limit {
				t.Fatalf("%d cached segment states, want ≤ %d", segStates, limit)
			}
			// A known segment keeps being served as itself after the cap.
			resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": "s0"}})
			if err != nil || resp.Segment != "surface=s0" {
				t.Fatalf("known segment after the cap: %+v, %v", resp, err)
			}
		})
	}
}

// A request answered with a client error leaves no trace: no segment, no
// cell, no cached shares.
func TestRejectedRequestCreatesNoState(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1"]}`)
	ctx := context.Background()
	if _, _, err := f.reg.PutVersion(ctx, "m", "4", []byte(`{"backend": {"type": "test"}, "features": {"inputs": {"age": {"from": "features.age", "dtype": "float32"}}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.reg.PutEndpoint(ctx, "e", []byte(`{"arms": ["m@4"], "policy": {"segment_by": ["surface"], "max_segments": 2}}`)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		_, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": fmt.Sprintf("s%d", i)}})
		if fe := fault.As(err); fe == nil || fe.Kind != fault.Invalid {
			t.Fatalf("request without features.age: %v, want a client error", err)
		}
	}
	if n := len(f.table.Entries("e")); n != 0 {
		t.Fatalf("rejected requests made %d cells", n)
	}
	if n := f.table.SegmentCount("e"); n != 0 {
		t.Fatalf("rejected requests made %d segments", n)
	}
	// The cap is still free for requests that are served.
	for _, s := range []string{"a", "b"} {
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": s},
			Features: map[string]any{"age": 30.0}})
		if err != nil || resp.Segment != "surface="+s {
			t.Fatalf("served request: %+v, %v", resp, err)
		}
	}
}

// The request path never runs a Monte Carlo estimate, for a new segment or
// a known one: shares come from the cache, refreshed by Run.
func TestNoMonteCarloOnTheRequestPath(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1", "m@2", "m@3"], "policy": {"segment_by": ["surface"], "segment_prior_weight": 10}}`)
	f.r.syncRefresh = false
	// Evidence that makes the arms' posteriors differ in every segment.
	f.fill("surface=a", "m@1", 500, 50)
	f.fill("surface=a", "m@2", 500, 100)
	for i := 0; i < 2000; i++ {
		resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u",
			Context: map[string]string{"surface": fmt.Sprintf("s%d", i%300)}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := f.signer.Verify(resp.PredictionID)
		if err != nil || !(tok.Propensity > 0 && tok.Propensity <= 1) {
			t.Fatalf("token %+v, %v", tok, err)
		}
	}
	if n := f.r.estimates.Load(); n != 0 {
		t.Fatalf("%d Monte Carlo estimates on the request path", n)
	}
	// Off the path, the refresher computes the queued segments' shares,
	// and requests then log them.
	f.r.drainRefresh()
	if f.r.estimates.Load() == 0 {
		t.Fatal("the refresher computed nothing")
	}
	if sh := f.r.CachedShares("e", "surface=s1"); len(sh) != 3 {
		t.Fatalf("cached shares of surface=s1: %v", sh)
	}
	resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": "s1"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := f.signer.Verify(resp.PredictionID)
	sh := f.r.CachedShares("e", "surface=s1")
	for i, arm := range []string{"m@1", "m@2", "m@3"} {
		if arm == resp.Arm && math.Abs(tok.Propensity-sh[i]) > 1e-6 { // the token keeps 7 digits
			t.Fatalf("logged propensity %v, cached share %v", tok.Propensity, sh[i])
		}
	}
}

// runRefresher runs the router's refresher as the server does, off the
// caller's path, until the test ends.
func runRefresher(tb testing.TB, f *fixture) {
	f.r.syncRefresh = false
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.r.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
}

// Recommend over many distinct segment values costs what it costs over a
// few: compare the sub-benchmarks (benchstat) — no Monte Carlo on the path,
// and past max_segments (1000) the values share "other".
func BenchmarkRecommendSegments(b *testing.B) {
	for _, n := range []int{10, 5000, 100000} {
		b.Run(fmt.Sprintf("values=%d", n), func(b *testing.B) {
			f := newFixture(b, `{"arms": ["m@1", "m@2", "m@3"], "policy": {"segment_by": ["surface"]}}`)
			runRefresher(b, f)
			reqs := make([]*Request, n)
			for i := range reqs {
				reqs[i] = &Request{Endpoint: "e", UserID: "u", K: 10, Context: map[string]string{"surface": fmt.Sprintf("s%d", i)}}
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.r.Recommend(ctx, reqs[i%n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The shares a report computes become the ones the router draws from, so
// the report's traffic_share is what the policy does next; the endpoint-wide
// ones are what a new segment starts from.
func TestReportSharesAreDrawnFrom(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1", "m@2"], "policy": {"segment_by": ["surface"], "min_share": 0}}`)
	f.r.syncRefresh = false
	f.fill("surface=a", "m@1", 400, 40)
	f.fill("surface=a", "m@2", 400, 120)
	for _, seg := range []string{"surface=a", "all"} {
		got := f.r.PolicyShares("e", seg)
		if cached := f.r.CachedShares("e", seg); len(cached) != 2 || cached[0] != got[0] || cached[1] != got[1] {
			t.Fatalf("%s: report shares %v, router's %v", seg, got, cached)
		}
		if got[1] < 0.99 {
			t.Fatalf("%s: m@2 share %v, want ≈ 1", seg, got[1])
		}
	}
	// A new segment (equal posteriors: no borrowed prior) is exactly uniform.
	if sh := f.r.PolicyShares("e", "surface=new"); sh[0] != 0.5 || sh[1] != 0.5 {
		t.Fatalf("a new segment's shares %v, want exactly uniform", sh)
	}
}
