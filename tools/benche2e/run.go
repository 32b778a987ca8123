package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/internal/loadtest"
	gwpb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// The paths measured, in order.
const (
	pathDirect    = "direct"
	pathProxy     = "proxy"
	pathMGHTTP    = "mg-http"
	pathNginxGRPC = "nginx-grpc"
	pathMGGRPC    = "mg-grpc"
	// The same two through a second gateway whose state is in Redis
	// (-redis): the request path must not wait on it.
	pathMGHTTPRedis = "mg-http-redis"
	pathMGGRPCRedis = "mg-grpc-redis"
	// The same two through another binary (-compare), for a before/after
	// in one run.
	pathMGHTTPB = "mg-http-b"
	pathMGGRPCB = "mg-grpc-b"
)

const endpointName = "bench"

type options struct {
	modelgate     string
	rate, workers int
	open, closed  time.Duration
	warmup        time.Duration
	candidates    int
	inflight      int
	markdown      bool
	rounds        int
	// redis adds the Redis-mode paths: a redis-server on a free port and a
	// second gateway with --redis-url on it.
	redis bool
	// profile, when set, is a directory for CPU and allocation profiles of
	// each gateway path, taken under an open loop at rate after the
	// measured rounds (profileFor each).
	profile    string
	profileFor time.Duration
	// compare, when set, is a second modelgate binary measured in the
	// same run (paths mg-http-b and mg-grpc-b), with compareEnv added to
	// its environment.
	compare    string
	compareEnv []string
}

// callTimeout bounds every call the client makes.
const callTimeout = 2 * time.Second

// requests are the run's request bodies: users u0…u999, the same
// candidates each time.
type requests struct {
	bodies  []recommendRequest
	json    [][]byte
	predict []*apis.PredictRequest
	grpc    []*gwpb.RecommendRequest
}

func newRequests(candidates int) *requests {
	cands := make([]string, candidates)
	for i := range cands {
		cands[i] = fmt.Sprintf("item%d", i)
	}
	r := &requests{}
	for u := range 1000 {
		b := recommendRequest{UserID: fmt.Sprintf("u%d", u), Candidates: cands, K: 10}
		raw, _ := json.Marshal(b)
		r.bodies = append(r.bodies, b)
		r.json = append(r.json, raw)
		r.predict = append(r.predict, predictRequest(&b))
		r.grpc = append(r.grpc, &gwpb.RecommendRequest{Endpoint: endpointName, UserId: b.UserID, Candidates: cands, K: 10})
	}
	return r
}

func run(ctx context.Context, out io.Writer, o options) (err error) {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	mg, err := filepath.Abs(o.modelgate)
	if err != nil {
		return err
	}
	if _, err := os.Stat(mg); err != nil {
		return fmt.Errorf("the modelgate binary: %w (make build)", err)
	}
	dir, err := os.MkdirTemp("", "bench-e2e.")
	if err != nil {
		return err
	}
	var children []*child
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			children[i].stop()
		}
		if err == nil {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "benche2e: logs kept in %s\n", dir)
		}
	}()

	fmt.Fprintf(out, "bench-e2e: %d rps open loop × %s, then %d workers closed loop × %s, per path (warm-up %s), in %d interleaved rounds; %d candidates, k 10; all on 127.0.0.1\n",
		o.rate, o.open, o.workers, o.closed, o.warmup, o.rounds, o.candidates)
	fmt.Fprintf(out, "machine: %d cores, %s; load average before: %s\n", runtime.NumCPU(), cpuModel(), loadAvg())

	be, backendAddr, err := startChild("backend", exec.Command(self, "backend"), filepath.Join(dir, "backend.log"), true)
	if err != nil {
		return err
	}
	children = append(children, be)
	proxyArgs := []string{"proxy", "-backend", backendAddr}
	proxyPprof := ""
	if o.profile != "" {
		port, err := freePort()
		if err != nil {
			return err
		}
		proxyPprof = fmt.Sprintf("127.0.0.1:%d", port)
		proxyArgs = append(proxyArgs, "-pprof", proxyPprof)
	}
	px, proxyAddr, err := startChild("proxy", exec.Command(self, proxyArgs...), filepath.Join(dir, "proxy.log"), true)
	if err != nil {
		return err
	}
	children = append(children, px)

	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(modelgateConfig(backendAddr)), 0o644); err != nil {
		return err
	}
	gateways := []*gatewayChild{{name: "modelgate", httpPath: pathMGHTTP, grpcPath: pathMGGRPC, bin: mg}}
	if o.compare != "" {
		b, err := filepath.Abs(o.compare)
		if err != nil {
			return err
		}
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("-compare: %w", err)
		}
		gateways = append(gateways, &gatewayChild{name: "modelgate-b", httpPath: pathMGHTTPB, grpcPath: pathMGGRPCB, bin: b, env: o.compareEnv})
	}
	if o.redis {
		rport, err := freePort()
		if err != nil {
			return err
		}
		raddr := fmt.Sprintf("127.0.0.1:%d", rport)
		rdir := filepath.Join(dir, "redis")
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			return err
		}
		// As the README asks of a production Redis: AOF, noeviction.
		rc, _, err := startChild("redis-server", exec.Command("redis-server", "--port", fmt.Sprint(rport), "--bind", "127.0.0.1",
			"--dir", rdir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"),
			filepath.Join(dir, "redis.log"), false)
		if err != nil {
			return err
		}
		children = append(children, rc)
		if err := waitListening(ctx, rc, raddr, 30*time.Second); err != nil {
			return err
		}
		gateways = append(gateways, &gatewayChild{name: "modelgate-redis", httpPath: pathMGHTTPRedis, grpcPath: pathMGGRPCRedis,
			redisURL: "redis://" + raddr + "/0", bin: mg})
	}
	for _, gw := range gateways {
		c, err := gw.start(ctx, cfg, dir, o.profile != "")
		if err != nil {
			return err
		}
		children = append(children, c)
		gw.proc = c
	}

	nginxAddr := ""
	var nginxChild *child
	if nginx, err := findNginx(); err != nil {
		if os.Getenv("CI") != "" {
			return errors.New("nginx not found, and CI is set: apt-get install nginx")
		}
		fmt.Fprintln(out, "nginx not found (apt-get install nginx): the nginx-grpc row and the gRPC ratios are skipped")
	} else {
		port, err := freePort()
		if err != nil {
			return err
		}
		nginxAddr = fmt.Sprintf("127.0.0.1:%d", port)
		nc, err := startNginx(ctx, nginx, filepath.Join(dir, "nginx"), nginxAddr, backendAddr)
		if err != nil {
			return err
		}
		children = append(children, nc)
		nginxChild = nc
	}

	reqs := newRequests(o.candidates)
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConns: o.inflight, MaxIdleConnsPerHost: o.inflight, IdleConnTimeout: time.Minute}}
	defer httpClient.CloseIdleConnections()
	dial := func(addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	type path struct {
		name, baseline string
		call           loadtest.Call
		server         *child // the process that serves the path, for its CPU time
	}
	backendConn, err := dial(backendAddr)
	if err != nil {
		return err
	}
	defer backendConn.Close()
	paths := []path{
		{pathDirect, "", predictCall(apis.NewPredictionServiceClient(backendConn), reqs), be},
		{pathProxy, "", httpCall(httpClient, "http://"+proxyAddr+"/recommend", reqs), px},
	}
	for _, gw := range gateways {
		paths = append(paths, path{gw.httpPath, pathProxy, httpCall(httpClient, "http://"+gw.http+"/v1/endpoints/"+endpointName+"/recommend", reqs), gw.proc})
	}
	if nginxAddr != "" {
		nginxConn, err := dial(nginxAddr)
		if err != nil {
			return err
		}
		defer nginxConn.Close()
		paths = append(paths, path{pathNginxGRPC, "", predictCall(apis.NewPredictionServiceClient(nginxConn), reqs), nginxChild})
	}
	for _, gw := range gateways {
		conn, err := dial(gw.grpc)
		if err != nil {
			return err
		}
		defer conn.Close()
		paths = append(paths, path{gw.grpcPath, pathNginxGRPC, recommendCall(gwpb.NewGatewayClient(conn), reqs), gw.proc})
	}

	// Every path gets the same number of rounds, interleaved, so that
	// load from elsewhere on the machine falls on all of them alike; the
	// latencies of a path's rounds are pooled.
	results := make([]*result, len(paths))
	for i, p := range paths {
		// One call first: a path that does not work fails here, clearly.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.call(cctx, 0)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: first call: %w", p.name, err)
		}
		results[i] = &result{name: p.name, baseline: p.baseline}
	}
	openEach, closedEach := o.open/time.Duration(o.rounds), o.closed/time.Duration(o.rounds)
	for round := range o.rounds {
		for i, p := range paths {
			r := results[i]
			if round == 0 && o.warmup > 0 {
				loadtest.OpenLoop(ctx, p.call, o.rate, o.warmup, callTimeout, o.inflight)
			}
			cpu0, ok0 := cpuTime(p.server.cmd.Process.Pid)
			lat, failed, shed, dropped, err := loadtest.OpenLoop(ctx, p.call, o.rate, openEach, callTimeout, o.inflight)
			if cpu1, ok1 := cpuTime(p.server.cmd.Process.Pid); ok0 && ok1 {
				r.cpu += cpu1 - cpu0
				r.cpuCalls += len(lat)
			}
			r.open = append(r.open, lat...)
			r.failed += failed
			r.shed += shed
			r.dropped += dropped
			if r.firstErr == nil {
				r.firstErr = err
			}
			ok, failed, shed, took, err := loadtest.ClosedLoop(ctx, p.call, o.workers, closedEach, callTimeout)
			r.closed += ok
			r.closedIn += took
			r.failed += failed
			r.shed += shed
			if r.firstErr == nil {
				r.firstErr = err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		fmt.Fprintf(out, "round %d of %d done, load average %s\n", round+1, o.rounds, loadAvg())
	}
	var failures []string
	stalled := false
	for _, r := range results {
		slices.Sort(r.open)
		fmt.Fprintf(out, "%-10s p50 %s  p99 %s  closed loop %.0f rps  (open loop ok %d, dropped %d; failed %d, shed %d)\n",
			r.name, r.p(0.5), r.p(0.99), r.rps(), len(r.open), r.dropped, r.failed, r.shed)
		if r.dropped > 0 {
			stalled = true
		}
		if r.failed > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d calls failed, the first: %v", r.name, r.failed, r.firstErr))
		}
	}
	fmt.Fprintf(out, "load average after: %s\n", loadAvg())
	if o.profile != "" {
		// The baseline too, to see where the gateway's extra time goes.
		files, err := profilePath(ctx, proxyPprof, paths[1].call, o, pathProxy)
		if err != nil {
			return fmt.Errorf("profiling the proxy: %w", err)
		}
		fmt.Fprintf(out, "profiles of %s under %d rps: %s\n", pathProxy, o.rate, strings.Join(files, ", "))
		for _, gw := range gateways {
			for _, p := range paths {
				if p.name != gw.httpPath && p.name != gw.grpcPath {
					continue
				}
				files, err := profilePath(ctx, gw.pprof, p.call, o, p.name)
				if err != nil {
					return fmt.Errorf("profiling %s: %w", p.name, err)
				}
				fmt.Fprintf(out, "profiles of %s under %d rps: %s\n", p.name, o.rate, strings.Join(files, ", "))
			}
		}
	}
	if stalled {
		fmt.Fprintf(out, "warning: open-loop sends were dropped: %d calls were in flight at once, so the machine stalled for at least %s; this run's percentiles say more about the machine than about the paths\n",
			o.inflight, time.Duration(o.inflight)*time.Second/time.Duration(o.rate))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "latencies in µs, open loop; added = minus direct's; ratio = added over the baseline's added (vs); closed rps over the baseline's")
	printTable(out, results, results[0], false)
	if o.markdown {
		fmt.Fprintln(out)
		printTable(out, results, results[0], true)
	}
	for _, c := range children {
		if done, err := c.exited(); done {
			failures = append(failures, fmt.Sprintf("%s exited during the run: %v", c.name, err))
		}
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "; "))
	}
	return nil
}

// gatewayChild is one modelgate process of the run and the paths through it.
type gatewayChild struct {
	name               string
	httpPath, grpcPath string
	redisURL           string // "" for the embedded store
	bin                string
	env                []string // added to the environment
	http, grpc, pprof  string   // its addresses, once started
	proc               *child
}

// start runs the gateway on the config with a fresh data dir, on free
// ports, and waits until it is ready.
func (gw *gatewayChild) start(ctx context.Context, cfg, dir string, pprof bool) (*child, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	gw.http, gw.grpc = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{"serve", "--config", cfg, "--data-dir", filepath.Join(dir, gw.name+"-data"),
		"--http-addr", gw.http, "--grpc-addr", gw.grpc, "--log-level", "warn"}
	if gw.redisURL != "" {
		args = append(args, "--redis-url", gw.redisURL)
	}
	if pprof {
		gw.pprof = fmt.Sprintf("127.0.0.1:%d", ports[2])
		args = append(args, "--pprof-addr", gw.pprof)
	}
	cmd := exec.Command(gw.bin, args...)
	if len(gw.env) > 0 {
		cmd.Env = append(os.Environ(), gw.env...)
	}
	c, _, err := startChild(gw.name, cmd, filepath.Join(dir, gw.name+".log"), false)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c, "http://"+gw.http+"/readyz"); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// profilePath loads a path with an open loop at o.rate for o.profileFor
// while it takes the gateway's CPU profile and the allocations made in that
// time, and its mutex and block profiles (sampled by modelgate serve when
// --pprof-addr is set; empty for the proxy), and writes them to o.profile
// as NAME.cpu.pprof, NAME.allocs.pprof, NAME.mutex.pprof and
// NAME.block.pprof.
func profilePath(ctx context.Context, pprofAddr string, call loadtest.Call, o options, name string) ([]string, error) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return nil, err
	}
	secs := max(int(o.profileFor.Seconds()), 1)
	kinds := []struct{ kind, url string }{
		{"cpu", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, secs)},
		{"allocs", fmt.Sprintf("http://%s/debug/pprof/allocs?seconds=%d", pprofAddr, secs)},
		{"mutex", fmt.Sprintf("http://%s/debug/pprof/mutex?seconds=%d", pprofAddr, secs)},
		{"block", fmt.Sprintf("http://%s/debug/pprof/block?seconds=%d", pprofAddr, secs)},
	}
	files := make([]string, len(kinds))
	errs := make([]error, len(kinds))
	done := make(chan int, len(kinds))
	for i, k := range kinds {
		files[i] = filepath.Join(o.profile, name+"."+k.kind+".pprof")
		go func() { // joined below
			errs[i] = fetchTo(ctx, k.url, files[i], time.Duration(secs+30)*time.Second)
			done <- i
		}()
	}
	// The load starts with the profiles and outlasts them by a second.
	loadtest.OpenLoop(ctx, call, o.rate, time.Duration(secs+1)*time.Second, callTimeout, o.inflight)
	for range kinds {
		<-done
	}
	return files, errors.Join(errs...)
}

// fetchTo writes what GET url answers to path.
func fetchTo(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// modelgateConfig is one endpoint with one tfserving arm on the backend,
// whose feature spec makes the PredictRequest predictRequest makes.
func modelgateConfig(backendAddr string) string {
	return fmt.Sprintf(`models:
  - name: %[1]s
    version: %[2]d
    backend:
      type: tfserving
      target: %[3]s
      model_name: %[1]s
      version: %[2]d
      signature_name: serving_default
      timeout_ms: 1000
      outputs: {scores: scores}
    features:
      inputs:
        user:  {from: user_id, transform: hash_bucket, buckets: %[4]d, dtype: int64}
        cands: {from: candidates, transform: list, dtype: string}
endpoints:
  - name: %[5]s
    arms: [%[1]s@%[2]d]
`, modelName, modelVersion, backendAddr, userBuckets, endpointName)
}

func waitReady(ctx context.Context, c *child, url string) error {
	client := &http.Client{Timeout: time.Second}
	for range 300 {
		if done, err := c.exited(); done {
			return fmt.Errorf("%s exited: %v", c.name, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s after 30 s", c.name, url)
}

// httpCall posts the i-th JSON body and reads the answer in full.
func httpCall(c *http.Client, url string, r *requests) loadtest.Call {
	return func(ctx context.Context, i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.json[i%len(r.json)]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"overloaded"`)) {
			return fmt.Errorf("%s: %w", url, loadtest.ErrShed)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
		}
		if !bytes.Contains(body, []byte(`"items"`)) {
			return fmt.Errorf("%s: no items in %s", url, body)
		}
		return nil
	}
}

// predictCall sends the i-th PredictRequest.
func predictCall(c apis.PredictionServiceClient, r *requests) loadtest.Call {
	return func(ctx context.Context, i int) error {
		resp, err := c.Predict(ctx, r.predict[i%len(r.predict)])
		if err != nil {
			return err
		}
		if n := len(resp.GetOutputs()["scores"].GetFloatVal()); n != len(r.bodies[0].Candidates) {
			return fmt.Errorf("predict: %d scores for %d candidates", n, len(r.bodies[0].Candidates))
		}
		return nil
	}
}

// recommendCall sends the i-th gRPC Recommend.
func recommendCall(c gwpb.GatewayClient, r *requests) loadtest.Call {
	return func(ctx context.Context, i int) error {
		resp, err := c.Recommend(ctx, r.grpc[i%len(r.grpc)])
		if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "overloaded") {
			return fmt.Errorf("recommend: %w", loadtest.ErrShed)
		}
		if err != nil {
			return err
		}
		if len(resp.GetItems()) == 0 {
			return errors.New("recommend: no items")
		}
		return nil
	}
}

// findNginx looks in PATH, then in /usr/sbin (often not in a user's PATH).
func findNginx() (string, error) {
	p, err := exec.LookPath("nginx")
	if err == nil {
		return p, nil
	}
	if p, err2 := exec.LookPath("/usr/sbin/nginx"); err2 == nil {
		return p, nil
	}
	return "", err
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
