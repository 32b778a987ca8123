package router

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/store"
)

// scorer is a test backend: it ranks the candidates (or c0..c19) with fixed
// scores, or fails, or sleeps past its deadline, as its mode says.
// As a backend.BatchScorer it answers each request as Predict would, or
// fails the whole call as its batchMode says.
type scorer struct {
	mode      atomic.Value // "ok", "fail", "slow", "lag", "gate", "junk", "reject", "inf", "nan"
	batchMode atomic.Value // "" (as mode says), "notstack", "fail", "reject"
	calls     atomic.Int64 // Predict calls
	batches   atomic.Int64 // PredictBatch calls
	batched   atomic.Int64 // requests in PredictBatch calls
	// gate holds a "gate" scorer's calls until it is closed (or their
	// deadline passes).
	gate chan struct{}
}

func (s *scorer) Predict(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	s.calls.Add(1)
	return s.answer(ctx, req)
}

func (s *scorer) answer(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	switch s.mode.Load().(string) {
	case "fail":
		return nil, fmt.Errorf("connection refused: %w", backend.ErrUnavailable)
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	case "gate":
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "lag":
		time.Sleep(12 * time.Millisecond) // slow, but inside the 20 ms deadline
	case "reject":
		return nil, backend.RejectInput(nil, "%s", rejectMsg)
	case "inf", "nan":
		bad := math.Inf(1)
		if s.mode.Load() == "nan" {
			bad = math.NaN()
		}
		return []backend.Item{{ID: "c0", Score: 1}, {ID: "c1", Score: bad}}, nil
	case "junk":
		// A model that ignores candidates and exclude and repeats itself.
		return []backend.Item{{ID: "x", Score: 9}, {ID: "c1", Score: 8}, {ID: "c1", Score: 7}, {ID: "c2", Score: 6}}, nil
	}
	ids := req.Candidates
	if ids == nil {
		for i := 0; i < 20; i++ {
			ids = append(ids, fmt.Sprintf("c%d", i))
		}
	}
	out := make([]backend.Item, 0, len(ids))
	for i, id := range ids {
		out = append(out, backend.Item{ID: id, Score: float64(len(ids) - i)})
	}
	return out, nil
}

// rejectMsg is what a "reject" scorer says: 251 bytes; its 200th byte is
// inside a two-byte character, and a '!' follows it.
var rejectMsg = "a" + strings.Repeat("é", 100) + "!" + strings.Repeat("x", 49)

type fixture struct {
	r       *Router
	reg     *registry.Registry
	table   *counters.Table
	scorers map[string]*scorer
	signer  *predtoken.Signer
}

func newFixture(t testing.TB, endpoint string) *fixture {
	return newFixtureOpt(t, endpoint, Options{})
}

func newFixtureOpt(t testing.TB, endpoint string, opt Options) *fixture {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{table: &counters.Table{}, scorers: map[string]*scorer{}}
	load := func(_ context.Context, _ *backendtest.Spec, opt backend.LoadOptions) (backend.Scorer, error) {
		s := &scorer{}
		s.mode.Store("ok")
		f.scorers[opt.Model+"@"+opt.Version] = s
		return s, nil
	}
	ctx := context.Background()
	f.reg, err = registry.New(ctx, db, backend.NewDrivers(backendtest.Driver{Name: "test", Loader: load}), nil, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2", "3"} {
		if _, _, err := f.reg.PutVersion(ctx, "m", v, []byte(`{"backend": {"type": "test", "timeout_ms": 20}, "features": {"inputs": {"u": {"from": "user_id", "dtype": "string"}}}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.reg.PutEndpoint(ctx, "e", []byte(endpoint)); err != nil {
		t.Fatal(err)
	}
	f.signer, _ = predtoken.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	f.r = New(f.reg, f.table, f.signer, nil, opt)
	f.r.syncRefresh = true // a refresher that is never behind: statistics without scheduling
	f.r.draws = 2000       // shares to ±0.02: the propensities drawn from them are exact anyway
	return f
}

func (f *fixture) trials(arm, segment string) uint64 {
	c := f.table.Lookup(counters.Key{Endpoint: "e", Segment: segment, Arm: arm})
	if c == nil {
		return 0
	}
	t, _ := c.Counts()
	return t
}

func TestFallback(t *testing.T) {
	cases := []struct {
		name     string
		endpoint string
		modes    map[string]string
		paused   []string
		wantArm  string
		wantCode string
	}{
		{"chosen fails, fallback serves", `{"arms": ["m@1", "m@2"], "fallback": "m@2"}`,
			map[string]string{"m@1": "fail"}, []string{}, "m@2", ""},
		{"chosen times out, fallback serves", `{"arms": ["m@1", "m@2"], "fallback": "m@2"}`,
			map[string]string{"m@1": "slow"}, nil, "m@2", ""},
		{"no fallback set: best other arm", `{"arms": ["m@1", "m@2"]}`,
			map[string]string{"m@1": "fail"}, nil, "m@2", ""},
		{"everything fails", `{"arms": ["m@1", "m@2"], "fallback": "m@1"}`,
			map[string]string{"m@1": "fail", "m@2": "fail"}, nil, "", "no_healthy_arm"},
		{"all arms paused", `{"arms": ["m@1", "m@2"]}`,
			nil, []string{"m@1", "m@2"}, "", "no_healthy_arm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.endpoint)
			for arm, m := range tc.modes {
				f.scorers[arm].mode.Store(m)
			}
			for _, arm := range tc.paused {
				if _, err := f.reg.SetArmState(context.Background(), "e", arm, registry.Paused); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20; i++ {
				resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
				if tc.wantCode != "" {
					if fe := fault.As(err); fe == nil || fe.Code != tc.wantCode || fe.Kind != fault.Unavailable {
						t.Fatalf("got %v, want %s", err, tc.wantCode)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if resp.Arm != tc.wantArm {
					t.Fatalf("served by %s, want %s", resp.Arm, tc.wantArm)
				}
			}
			if tc.wantCode == "" {
				// Only the arm that served gets trials.
				if got := f.trials(tc.wantArm, "all"); got != 20 {
					t.Fatalf("%s has %d trials, want 20", tc.wantArm, got)
				}
				if got := f.trials("m@1", "all"); got != 0 {
					t.Fatalf("the failing arm got %d trials", got)
				}
				// Each failure of the chosen arm is counted under its class.
				class := map[string]string{"fail": "unavailable", "slow": "deadline"}[tc.modes["m@1"]]
				if n := f.r.Errors().Of("e")["m@1"][class]; n == 0 || n > 20 {
					t.Fatalf("m@1 %s errors counted: %d", class, n)
				}
			}
		})
	}
}

func TestFallbackFlag(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1", "m@2"], "fallback": "m@2"}`)
	f.scorers["m@1"].mode.Store("fail")
	sawFallback := false
	for i := 0; i < 50; i++ {
		resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u"})
		if err != nil {
			t.Fatal(err)
		}
		// m@2 serves either because it was chosen (fallback=false) or
		// because m@1 failed (fallback=true).
		if resp.Arm != "m@2" {
			t.Fatalf("served by %s", resp.Arm)
		}
		sawFallback = sawFallback || resp.Fallback
	}
	if !sawFallback {
		t.Fatal("m@1 was never chosen and failed over in 50 requests")
	}
}

func TestCandidatesAndExcludeHoldForAnyModel(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1"]}`)
	f.scorers["m@1"].mode.Store("junk")
	resp, err := f.r.Recommend(context.Background(), &Request{Endpoint: "e", UserID: "u",
		Candidates: []string{"c1", "c2", "c3"}, Exclude: []string{"c2"}, K: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Items) != 1 || resp.Items[0].ID != "c1" {
		t.Fatalf("items %+v, want only c1 (x is no candidate, c2 is excluded, c1 once)", resp.Items)
	}
}

func TestSegmentsAndPause(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1", "m@2", "m@3"], "policy": {"segment_by": ["surface", "country"]}}`)
	ctx := context.Background()
	if _, err := f.reg.SetArmState(ctx, "e", "m@3", registry.Paused); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		resp, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u", Context: map[string]string{"surface": "music", "country": "de"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Segment != "surface=music,country=de" {
			t.Fatalf("segment %q", resp.Segment)
		}
		if resp.Arm == "m@3" {
			t.Fatal("a paused arm was chosen")
		}
	}
	if got := f.trials("m@1", "surface=music,country=de") + f.trials("m@2", "surface=music,country=de"); got != 200 {
		t.Fatalf("segment trials %d, want 200", got)
	}
	// Resuming takes effect on the next request.
	if _, err := f.reg.SetArmState(ctx, "e", "m@3", registry.Active); err != nil {
		t.Fatal(err)
	}
	seen := false
	for i := 0; i < 200 && !seen; i++ {
		resp, _ := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "u"})
		seen = resp.Arm == "m@3"
	}
	if !seen {
		t.Fatal("a resumed arm was never chosen in 200 requests")
	}
}

func TestMissingFeatureIsClientError(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1"]}`)
	ctx := context.Background()
	if _, _, err := f.reg.PutVersion(ctx, "n", "1", []byte(`{"backend": {"type": "test"}, "features": {"inputs": {"age": {"from": "features.age", "dtype": "float32"}}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.reg.PutEndpoint(ctx, "e2", []byte(`{"arms": ["n@1"]}`)); err != nil {
		t.Fatal(err)
	}
	_, err := f.r.Recommend(ctx, &Request{Endpoint: "e2", UserID: "u"})
	fe := fault.As(err)
	if fe == nil || fe.Kind != fault.Invalid || fe.Field != "features.age" {
		t.Fatalf("got %v, want a 400 naming features.age", err)
	}
}

func TestSegmentName(t *testing.T) {
	for _, tc := range []struct {
		by   []string
		ctx  map[string]string
		want string
	}{
		{nil, map[string]string{"surface": "music"}, "all"},
		{[]string{"surface"}, map[string]string{"surface": "music"}, "surface=music"},
		{[]string{"surface"}, nil, "surface="},
		{[]string{"b", "a"}, map[string]string{"a": "1", "b": "2"}, "b=2,a=1"},
		// Escaping keeps distinct contexts apart.
		{[]string{"a", "b"}, map[string]string{"a": "x,b=y", "b": "z"}, "a=x%2Cb%3Dy,b=z"},
		{[]string{"a", "b"}, map[string]string{"a": "x", "b": "y,b=z"}, "a=x,b=y%2Cb%3Dz"},
		{[]string{"a"}, map[string]string{"a": "50%"}, "a=50%25"},
	} {
		if got := Segment(tc.by, tc.ctx); got != tc.want {
			t.Errorf("Segment(%v, %v) = %q, want %q", tc.by, tc.ctx, got, tc.want)
		}
	}
}

func BenchmarkRecommend(b *testing.B) {
	f := newFixture(b, `{"arms": ["m@1", "m@2", "m@3"]}`)
	runRefresher(b, f)
	req := &Request{Endpoint: "e", UserID: "u", K: 10}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.r.Recommend(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

var zeroTime time.Time
