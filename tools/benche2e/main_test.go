package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 4 is the 2nd", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p50 of 5 is the 3rd", ms(1, 2, 3, 4, 5), 0.5, 3 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 100 is the 50th", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p100 is the max", ms(1, 2, 3), 1, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

// lat is n latencies, all d.
func lat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// The table's added latencies are over direct's, the ratios over the
// baseline's added latency, and the verdicts follow DESIGN.md's budget.
func TestTable(t *testing.T) {
	us := time.Microsecond
	direct := &result{name: pathDirect, open: lat(10, 100*us), closed: 1000, closedIn: time.Second}
	results := []*result{
		direct,
		{name: pathProxy, open: lat(10, 300*us), closed: 500, closedIn: time.Second},
		// adds 300 µs to the proxy's 200: 1.50, over 1.00; rps 400/500
		{name: pathMGHTTP, baseline: pathProxy, open: lat(10, 400*us), closed: 400, closedIn: time.Second},
		{name: pathNginxGRPC, open: lat(10, 200*us), closed: 800, closedIn: time.Second},
		// adds 150 µs to nginx's 100: 1.50, within 1.50
		{name: pathMGGRPC, baseline: pathNginxGRPC, open: lat(10, 250*us), closed: 600, closedIn: time.Second},
	}
	var b bytes.Buffer
	printTable(&b, results, direct, false)
	rows := map[string][]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	for _, tc := range []struct {
		row  string
		want []string
	}{
		{pathProxy, []string{"proxy", "300", "300", "200", "200", "-"}},
		{pathMGHTTP, []string{"mg-http", "400", "400", "300", "300", "proxy", "1.50", "(>1.00", "over)", "1.50", "(>1.25", "over)", "400", "0.80", "(<1.00", "under)"}},
		{pathMGGRPC, []string{"mg-grpc", "250", "250", "150", "150", "nginx-grpc", "1.50", "(≤1.50", "ok)", "1.50", "(≤1.50", "ok)", "600", "0.75"}},
	} {
		got := rows[tc.row]
		if len(got) < len(tc.want) || !equal(got[:len(tc.want)], tc.want) {
			t.Errorf("row %s = %q, want it to start %q\n%s", tc.row, got, tc.want, b.String())
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	direct := &result{name: pathDirect, open: lat(4, time.Millisecond), closed: 10, closedIn: time.Second}
	var b bytes.Buffer
	printTable(&b, []*result{direct, {name: pathProxy, open: lat(4, 2*time.Millisecond)}}, direct, true)
	want := "| path | p50 µs | p99 µs | added p50 | added p99 | vs | ratio p50 | ratio p99 | closed rps | ratio rps | ok/dropped/failed/shed |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" +
		"| direct | 1000 | 1000 | - | - | - | - | - | 10 | - | 4/0/0/0 |\n" +
		"| proxy | 2000 | 2000 | 1000 | 1000 | - | - | - | 0 | - | 4/0/0/0 |\n"
	if b.String() != want {
		t.Errorf("markdown table:\n%s\nwant\n%s", b.String(), want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTopKNeedsOneScorePerCandidate(t *testing.T) {
	if items, err := topK(&apis.PredictResponse{}, []string{"a"}, 1); err == nil {
		t.Errorf("topK without scores = %v, want an error", items)
	}
}

func TestRatioWithoutBaseline(t *testing.T) {
	if r := ratio(time.Millisecond, 0); r == r {
		t.Errorf("ratio over a zero baseline = %v, want NaN", r)
	}
	if r := ratio(-time.Millisecond, time.Millisecond); r == r {
		t.Errorf("ratio of a negative added latency = %v, want NaN", r)
	}
	if v := verdict(nan(), 1); v != " (n/a)" {
		t.Errorf("verdict(NaN) = %q", v)
	}
}

func startBackend(t *testing.T) *tfservingtest.Server {
	t.Helper()
	s, err := tfservingtest.Start(benchModel())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func dialT(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// The bare proxy, in front of the fake backend, ranks the candidates by
// the backend's scores and rejects bad input with 400.
func TestProxy(t *testing.T) {
	be := startBackend(t)
	srv := httptest.NewServer(proxy{backend: apis.NewPredictionServiceClient(dialT(t, be.Addr())), timeout: 5 * time.Second})
	defer srv.Close()
	cands := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"ok", `{"user_id":"u1","candidates":["a","b","c","d","e"],"k":3}`, 200},
		{"not JSON", `{"user_id":`, 400},
		{"k 0", `{"user_id":"u1","candidates":["a"],"k":0}`, 400},
		{"no candidates", `{"user_id":"u1","k":3}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/recommend", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				return
			}
			var got recommendResponse
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			// The expected ranking, from the backend's scoring function.
			best := []item{}
			for _, c := range cands {
				best = append(best, item{ID: c, Score: float64(float32(tfservingtest.DefaultScore(modelVersion, c)))})
			}
			for i := range best {
				for j := i + 1; j < len(best); j++ {
					if best[j].Score > best[i].Score {
						best[i], best[j] = best[j], best[i]
					}
				}
			}
			if fmt.Sprint(got.Items) != fmt.Sprint(best[:3]) {
				t.Errorf("items %v, want %v", got.Items, best[:3])
			}
		})
	}
}

// The bare proxy sends the backend the very PredictRequest the gateway's
// tfserving backend sends for the run's feature spec, so the comparison is
// of like with like.
func TestProxySendsTheGatewaysRequest(t *testing.T) {
	be := startBackend(t)
	plan, err := featurizer.Parse([]byte(fmt.Sprintf(`{"inputs": {
		"user":  {"from": "user_id", "transform": "hash_bucket", "buckets": %d, "dtype": "int64"},
		"cands": {"from": "candidates", "transform": "list", "dtype": "string"}}}`, userBuckets)))
	if err != nil {
		t.Fatal(err)
	}
	pool := tfserving.NewPool()
	defer pool.Close()
	ctx := context.Background()
	m, err := pool.Open(ctx, tfserving.Config{Target: be.Addr(), ModelName: modelName, Version: modelVersion,
		SignatureName: "serving_default", Timeout: 5 * time.Second, Outputs: tfserving.Outputs{Scores: "scores"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	reqs := newRequests(7)
	body := reqs.bodies[42]
	inputs, err := plan.Build(&featurizer.Request{UserID: body.UserID, Candidates: body.Candidates})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Predict(ctx, &backend.Request{Inputs: inputs, Candidates: body.Candidates, K: body.K}); err != nil {
		t.Fatal(err)
	}
	gateway := be.LastRequest()
	if err := predictCall(apis.NewPredictionServiceClient(dialT(t, be.Addr())), reqs)(ctx, 42); err != nil {
		t.Fatal(err)
	}
	bare := be.LastRequest()
	if !proto.Equal(gateway, bare) {
		t.Errorf("the proxy's request differs from the gateway's:\n gateway %s\n proxy   %s", prototext.Format(gateway), prototext.Format(bare))
	}
}

// The open loop sends at most inflight calls at once, drops the sends due
// while every slot is busy, and counts failed calls apart.
func TestOpenLoopBoundsInFlight(t *testing.T) {
	block := func(ctx context.Context, _ int) error { <-ctx.Done(); return ctx.Err() }
	// 50 sends due over 1 s; the two sent block until their 3 s timeout.
	lat, failed, shed, dropped, err := openLoop(context.Background(), block, 50, time.Second, 3*time.Second, 2)
	if len(lat) != 0 || failed != 2 || shed != 0 || dropped != 48 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ok %d, failed %d, dropped %d, first error %v; want 0, 2, 48, deadline exceeded", len(lat), failed, dropped, err)
	}
}

func TestOpenLoopTimesEveryCall(t *testing.T) {
	calls := make(chan int, 100)
	ok := func(_ context.Context, i int) error { calls <- i; return nil }
	lat, failed, _, dropped, _ := openLoop(context.Background(), ok, 100, time.Second, time.Second, 100)
	close(calls)
	seen := map[int]bool{}
	for i := range calls {
		seen[i] = true
	}
	if len(lat) != 100 || failed != 0 || dropped != 0 || len(seen) != 100 {
		t.Errorf("ok %d, failed %d, dropped %d, distinct calls %d; want 100, 0, 0, 100", len(lat), failed, dropped, len(seen))
	}
	for i := 1; i < len(lat); i++ {
		if lat[i] < lat[i-1] || lat[i] <= 0 {
			t.Fatalf("latencies not sorted and positive: %v", lat)
		}
	}
}

// Calls the server shed are counted apart from failures, in both loops.
func TestLoopsCountShedApart(t *testing.T) {
	boom := errors.New("boom")
	mixed := func(_ context.Context, i int) error {
		switch i % 3 {
		case 0:
			return boom
		case 1:
			return fmt.Errorf("recommend: %w", errShed)
		}
		return nil
	}
	ok, failed, shed, took, err := closedLoop(context.Background(), mixed, 4, 100*time.Millisecond, time.Second)
	if ok == 0 || failed == 0 || shed == 0 || took <= 0 || !errors.Is(err, boom) {
		t.Errorf("closed loop: ok %d, failed %d, shed %d, took %v, error %v; want the counts positive and boom", ok, failed, shed, took, err)
	}
	lat, failed, shed, dropped, err := openLoop(context.Background(), mixed, 30, time.Second, time.Second, 30)
	if len(lat) != 10 || failed != 10 || shed != 10 || dropped != 0 || !errors.Is(err, boom) {
		t.Errorf("open loop: ok %d, failed %d, shed %d, dropped %d, error %v; want 10, 10, 10, 0, boom", len(lat), failed, shed, dropped, err)
	}
}

// The nginx config passes gRPC to the backend over HTTP/2 on the listen
// address, keeping connections to the backend open.
func TestNginxConfig(t *testing.T) {
	c := nginxConfig("127.0.0.1:1111", "127.0.0.1:2222")
	for _, want := range []string{"listen 127.0.0.1:1111 http2;", "server 127.0.0.1:2222;", "grpc_pass grpc://backend;", "keepalive 32;"} {
		if !strings.Contains(c, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, c)
		}
	}
}

// The HTTP call tells a 503 overloaded (shed) from other failures.
func TestHTTPCallClassifies(t *testing.T) {
	for _, tc := range []struct {
		name          string
		status        int
		body          string
		wantErr, shed bool
	}{
		{"ok", 200, `{"items":[{"id":"a"}]}`, false, false},
		{"shed", 503, `{"error":{"code":"overloaded","message":"too many requests in flight"}}`, true, true},
		{"other 503", 503, `{"error":{"code":"unavailable"}}`, true, false},
		{"no items", 200, `{}`, true, false},
		{"400", 400, `{"error":{"code":"invalid_argument"}}`, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			err := httpCall(srv.Client(), srv.URL, newRequests(2))(context.Background(), 0)
			if (err != nil) != tc.wantErr || errors.Is(err, errShed) != tc.shed {
				t.Errorf("error %v; want an error %v, shed %v", err, tc.wantErr, tc.shed)
			}
		})
	}
}
