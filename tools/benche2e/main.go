// Command benche2e measures what the gateway adds to a model call, against
// a bare HTTP-JSON→gRPC proxy and nginx grpc_pass, all in one run on
// 127.0.0.1 (docs/performance.md, "Gateway overhead").
//
//	make bench-e2e          # 1,000 rps × 10 s open loop, then 16 workers × 5 s, per path
//	make bench-e2e-short    # the same, about 20 s in all: keeps the harness working
//
// It starts, as child processes, a stand-alone TF-Serving-protocol backend
// (this binary's "backend" subcommand, around backend/tfserving/tfservingtest:
// Predict answers at once, one score per candidate), the bare proxy (the
// "proxy" subcommand), the modelgate binary given by -modelgate with one
// endpoint and one tfserving arm on that backend, and nginx with grpc_pass
// to the backend when nginx is installed (required when CI is set). It then
// loads each path in turn:
//
//	direct       gRPC Predict straight to the backend: what "added" is measured from
//	proxy        HTTP JSON recommend through the bare proxy (the HTTP baseline)
//	mg-http      HTTP JSON recommend through modelgate
//	nginx-grpc   gRPC Predict through nginx grpc_pass (the gRPC baseline)
//	mg-grpc      gRPC Recommend through modelgate
//	mg-http-redis, mg-grpc-redis
//	             the same through a second gateway with --redis-url on a
//	             local redis-server (AOF on, as in production), when
//	             redis-server is installed (-redis)
//	mg-http-b, mg-grpc-b
//	             the same through a second binary, -compare BIN (with
//	             -compare-env NAME=VALUE…): a before/after in one run
//
// in interleaved rounds (-rounds), so that load from elsewhere on a shared
// machine falls on every path alike. It prints each path's p50 and p99,
// what it adds over direct, the ratio of that to its baseline's and the
// closed-loop throughput, with the verdict of DESIGN.md's budget for each
// ratio. With -profile DIR it then loads each gateway path once more while
// it takes the gateway's CPU and allocation profiles (served on
// --pprof-addr) into DIR. Only ratios measured in the same run mean much on a shared
// machine. It exits non-zero on errors (a path that failed calls or did not
// start), never on the numbers.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend":
			exitOn(runBackend(os.Stdout))
			return
		case "proxy":
			fs := flag.NewFlagSet("proxy", flag.ExitOnError)
			target := fs.String("backend", "", "the backend's host:port")
			pprofAddr := fs.String("pprof", "", "also serve Go's runtime profiles on this address")
			_ = fs.Parse(os.Args[2:])
			exitOn(runProxy(os.Stdout, *target, *pprofAddr))
			return
		}
	}
	var o options
	flag.StringVar(&o.modelgate, "modelgate", "bin/modelgate", "the modelgate binary to measure")
	flag.IntVar(&o.rate, "rate", 1000, "open loop: calls per second")
	flag.DurationVar(&o.open, "open", 10*time.Second, "open loop: how long, per path")
	flag.IntVar(&o.workers, "workers", 16, "closed loop: workers calling back to back")
	flag.DurationVar(&o.closed, "closed", 5*time.Second, "closed loop: how long, per path")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "per path, before measuring: open loop at -rate, not counted")
	flag.IntVar(&o.candidates, "candidates", 20, "candidates per request (the backend scores each)")
	flag.IntVar(&o.inflight, "inflight", 256, "open loop: most calls in flight; a send due beyond it is dropped and counted")
	flag.IntVar(&o.rounds, "rounds", 5, "split each path's open and closed loops into this many rounds, the paths interleaved")
	flag.BoolVar(&o.markdown, "markdown", false, "also print the table in Markdown")
	_, noRedis := exec.LookPath("redis-server")
	flag.BoolVar(&o.redis, "redis", noRedis == nil, "also measure a gateway whose state is in a local redis-server (default: when redis-server is installed)")
	flag.StringVar(&o.profile, "profile", "", "write CPU and allocation profiles of each gateway path to this directory, taken under the open loop after the measured rounds")
	flag.StringVar(&o.compare, "compare", "", "also measure this second modelgate binary in the same run (paths mg-http-b, mg-grpc-b): a before/after")
	compareEnv := flag.String("compare-env", "", "with -compare: space-separated NAME=VALUE pairs added to the second binary's environment (GOGC=400)")
	flag.DurationVar(&o.profileFor, "profile-for", 10*time.Second, "with -profile: how long each profile runs")
	short := flag.Bool("short", os.Getenv("BENCH_E2E_SHORT") != "", "the short version (2 s open, 1 s closed per path); also BENCH_E2E_SHORT=1")
	flag.Parse()
	o.compareEnv = strings.Fields(*compareEnv)
	if *short {
		o.open, o.closed, o.warmup, o.rounds = 2*time.Second, time.Second, 500*time.Millisecond, 1
	}
	if o.rate <= 0 || o.workers <= 0 || o.candidates <= 0 || o.inflight <= 0 || o.rounds <= 0 || o.warmup < 0 ||
		o.open/time.Duration(max(o.rounds, 1)) < time.Second || o.closed/time.Duration(max(o.rounds, 1)) <= 0 {
		fmt.Fprintln(os.Stderr, "benche2e: -rate, -workers, -candidates, -inflight and -rounds must be positive, -open at least 1s per round, -closed positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exitOn(run(ctx, os.Stdout, o))
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benche2e:", err)
		os.Exit(1)
	}
}

// benchModel is the backend's one model: scores-only, the gateway's
// feature spec's inputs ("user" int64 [batch], "cands" string [batch, N]).
func benchModel() *tfservingtest.Model {
	sig := tfservingtest.Signature(map[string]tfservingtest.Spec{
		"user":  {DType: framework.DataType_DT_INT64, Shape: []int64{-1}},
		"cands": {DType: framework.DataType_DT_STRING, Shape: []int64{-1, -1}},
	}, map[string]tfservingtest.Spec{"scores": {DType: framework.DataType_DT_FLOAT, Shape: []int64{-1, -1}}})
	return &tfservingtest.Model{Name: modelName, Versions: map[int64]tfservingtest.State{modelVersion: tfservingtest.StateAvailable},
		Signatures: map[string]*tfpb.SignatureDef{"serving_default": sig}, CandidatesInput: "cands"}
}

// runBackend serves the model on a free loopback port, writes the address
// as the first line of out, and serves until SIGTERM, SIGINT or stdin closes.
func runBackend(out io.Writer) error {
	s, err := tfservingtest.Start(benchModel())
	if err != nil {
		return err
	}
	defer s.Stop()
	fmt.Fprintln(out, s.Addr())
	waitForEnd()
	return nil
}

// runProxy serves the bare proxy on a free loopback port in front of
// target, writes the address as the first line of out, and serves until
// SIGTERM, SIGINT or stdin closes.
func runProxy(out io.Writer, target, pprofAddr string) error {
	if target == "" {
		return errors.New("proxy: -backend host:port is required")
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: proxy{backend: apis.NewPredictionServiceClient(conn), timeout: time.Second},
		ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	if pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		ps := &http.Server{Addr: pprofAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = ps.ListenAndServe() }() // ends with the process
		defer ps.Close()
	}
	fmt.Fprintln(out, lis.Addr())
	waitForEnd()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// waitForEnd returns on SIGTERM or SIGINT, or when stdin closes (the parent
// went away).
func waitForEnd() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	eof := make(chan struct{})
	go func() { // ends when stdin does; not joined: the process exits next
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
}

// child is a process the run started.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

// startChild starts cmd with its stderr to logPath; when firstLine is set
// it returns the first line cmd writes to stdout (an address), within 30 s.
func startChild(name string, cmd *exec.Cmd, logPath string, firstLine bool) (*child, string, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd.Stderr = logf
	var out io.ReadCloser
	if firstLine {
		if out, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = logf
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, stdin: in, done: make(chan struct{})}
	lines := make(chan string, 1)
	read := make(chan struct{})
	if firstLine {
		go func() { // ends at the child's stdout EOF; Wait waits for it
			defer close(read)
			sc := bufio.NewScanner(out)
			if sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
			_, _ = io.Copy(io.Discard, out)
		}()
	} else {
		close(read)
	}
	go func() { // ends when the child does; stop waits for it
		<-read // Wait closes the pipe: only after the last read
		c.err = cmd.Wait()
		close(c.done)
	}()
	if !firstLine {
		return c, "", nil
	}
	select {
	case l, ok := <-lines:
		if ok {
			return c, strings.TrimSpace(l), nil
		}
	case <-time.After(30 * time.Second):
	}
	c.stop()
	return nil, "", fmt.Errorf("%s did not say where it listens (log: %s)", name, logPath)
}

// stop ends the child: SIGTERM and stdin closed, then SIGKILL after 10 s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// exited reports whether the child has exited, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// freePort returns a loopback port free at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts TCP connections or c exits.
func waitListening(ctx context.Context, c *child, addr string, within time.Duration) error {
	end := time.Now().Add(within)
	for time.Now().Before(end) && ctx.Err() == nil {
		if done, err := c.exited(); done {
			return fmt.Errorf("%s exited: %v", c.name, err)
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing listens on %s after %s", c.name, addr, within)
}
