package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"

	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/testenv"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// demoDir is the bundled demo, used as real model files by the tests.
var demoDir = filepath.Join("..", "..", "examples", "demo")

// testApp is the whole gateway in-process, on a temporary data dir, behind
// a real HTTP server.
type testApp struct {
	*app
	url     string
	dataDir string
}

// demoConfig is the bundled two-arm demo (mf@1, mf@2 behind home) that the
// tests are written against: examples/demo/config-embedded.yaml, which is
// config.yaml without its onnx arm nn@1. Tests of the onnx arm use
// fullDemoConfig.
func demoConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	return parseDemoConfig(t, filepath.Join(demoDir, "config-embedded.yaml"), extra)
}

// fullDemoConfig is examples/demo/config.yaml, with nn@1 (see
// demoConfigFile).
func fullDemoConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	return parseDemoConfig(t, demoConfigFile(t), extra)
}

func parseDemoConfig(t testing.TB, path, extra string) *config.Config {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(append(raw, []byte(extra)...), demoDir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// haveONNXRuntime reports whether backend/onnx finds its runtime library.
func haveONNXRuntime() bool {
	p := onnx.LibraryPath("")
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

const missingRuntime = "ONNX Runtime library not found: run `make onnxruntime` (scripts/onnxruntime.sh) or set " + onnx.EnvLibrary

// needONNXRuntime skips the test without the ONNX Runtime library, except
// under CI, where it must be installed.
func needONNXRuntime(t testing.TB) {
	t.Helper()
	if haveONNXRuntime() {
		return
	}
	testenv.SkipOrFail(t, missingRuntime)
}

// demoConfigFile is the bundled demo's config file: config.yaml, or, when
// the ONNX Runtime library is missing (and not under CI, where it must be
// there), config-embedded.yaml, the same without nn@1 — as `make run` does.
func demoConfigFile(t testing.TB) string {
	t.Helper()
	if haveONNXRuntime() {
		return filepath.Join(demoDir, "config.yaml")
	}
	if testenv.CI() {
		t.Fatal(missingRuntime + " (CI is set: every test dependency must be installed)")
	}
	t.Log(missingRuntime + "; using config-embedded.yaml")
	return filepath.Join(demoDir, "config-embedded.yaml")
}

func startApp(t *testing.T, cfg *config.Config) *testApp {
	t.Helper()
	return startSeededApp(t, cfg, 0)
}

// startSeededApp is startApp with a reproducible router when seed is not 0
// (see wire): what the bandit does then depends only on the requests'
// order, for the tests that check it.
func startSeededApp(t *testing.T, cfg *config.Config, seed uint64) *testApp {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := newSeededApp(context.Background(), cfg, dir, log, seed)
	if err != nil {
		t.Fatal(err)
	}
	ta, _ := serveTestApp(t, a, dir)
	return ta
}

// runOn runs the gateway with its background loops on dir (an existing data
// dir is reopened) behind a test HTTP server; stop shuts it down as SIGTERM
// would and closes the data dir, so the test can start it again on dir.
func runOn(t *testing.T, cfg *config.Config, dir string) (url string, stop func()) {
	t.Helper()
	a, err := newApp(context.Background(), cfg, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx); close(done) }()
	ts := httptest.NewServer(a.srv.Handler())
	return ts.URL, func() { ts.Close(); cancel(); <-done; a.close() }
}

// call sends a JSON request and decodes the JSON answer into out (when not
// nil), returning the status.
func call(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: not JSON: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type recResp struct {
	PredictionID string `json:"prediction_id"`
	Endpoint     string `json:"endpoint"`
	Arm          string `json:"arm"`
	Model        string `json:"model"`
	Version      string `json:"version"`
	Segment      string `json:"segment"`
	Items        []struct {
		ID    string  `json:"id"`
		Score float64 `json:"score"`
	} `json:"items"`
	Fallback bool `json:"fallback"`
}

type fbResp struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Rejected   []struct {
		Index int    `json:"index"`
		Code  string `json:"code"`
	} `json:"rejected"`
}

type errResp struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

type reportResp struct {
	Endpoint string `json:"endpoint"`
	Segment  string `json:"segment"`
	Arms     []struct {
		Arm          string     `json:"arm"`
		State        string     `json:"state"`
		Trials       uint64     `json:"trials"`
		Successes    uint64     `json:"successes"`
		Rate         float64    `json:"rate"`
		CI95         [2]float64 `json:"ci95"`
		PBest        float64    `json:"p_best"`
		ExpectedLoss float64    `json:"expected_loss"`
		TrafficShare float64    `json:"traffic_share"`
	} `json:"arms"`
	Decision struct {
		Status string  `json:"status"`
		Arm    *string `json:"arm"`
	} `json:"decision"`
	Regret struct {
		ExpectedCumulative float64 `json:"expected_cumulative"`
	} `json:"regret"`
}

func (r *reportResp) arm(name string) (trials, successes uint64) {
	for _, a := range r.Arms {
		if a.Arm == name {
			return a.Trials, a.Successes
		}
	}
	return 0, 0
}

// serveTestApp runs a's background work and serves it over HTTP and gRPC on
// loopback until the test ends; it returns the app and the gRPC address.
func serveTestApp(t *testing.T, a *app, dir string) (*testApp, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx); close(done) }()
	ts := httptest.NewServer(a.srv.Handler())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(a.srv.GRPCServerOptions()...)
	a.srv.RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		ts.Close()
		cancel()
		<-done
		a.close()
	})
	return &testApp{app: a, url: ts.URL, dataDir: dir}, lis.Addr().String()
}
