package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
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
	"github.com/modelgate/modelgate/internal/loadtest"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

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
	direct := &result{name: pathDirect, open: lat(4, time.Millisecond), closed: 10, closedIn: time.Second, cpu: time.Millisecond, cpuCalls: 4}
	var b bytes.Buffer
	printTable(&b, []*result{direct, {name: pathProxy, open: lat(4, 2*time.Millisecond)}}, direct, true)
	want := "| path | p50 µs | p99 µs | added p50 | added p99 | vs | ratio p50 | ratio p99 | closed rps | ratio rps | ok/dropped/failed/shed | server cpu µs/call |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" +
		"| direct | 1000 | 1000 | - | - | - | - | - | 10 | - | 4/0/0/0 | 250 |\n" +
		"| proxy | 2000 | 2000 | 1000 | 1000 | - | - | - | 0 | - | 4/0/0/0 | - |\n"
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
			if (err != nil) != tc.wantErr || errors.Is(err, loadtest.ErrShed) != tc.shed {
				t.Errorf("error %v; want an error %v, shed %v", err, tc.wantErr, tc.shed)
			}
		})
	}
}

// cpuTime reads this process's CPU time, which grows as it works.
func TestCPUTimeOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU time is read from /proc")
	}
	pid := os.Getpid()
	before, ok := cpuTime(pid)
	if !ok {
		t.Fatal("cpuTime of this process: not ok")
	}
	// Work until the reading moves by 50 ms of CPU. How long that takes
	// depends on what else runs, so only the generous deadline is timed:
	// a cpuTime that never moves fails there.
	deadline := time.Now().Add(30 * time.Second)
	x, after := 0, before
	for after-before < 50*time.Millisecond {
		for range 1 << 20 {
			x++
		}
		if after, ok = cpuTime(pid); !ok {
			t.Fatal("cpuTime of this process: not ok")
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpuTime after 30 s of work: %v → %v (%d loops)", before, after, x)
		}
	}
}
