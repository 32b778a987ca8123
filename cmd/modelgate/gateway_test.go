package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/gateway"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/report"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// demoDir is the bundled demo, used as real model files by the tests.
var demoDir = filepath.Join("..", "..", "examples", "demo")

// testApp is a gateway the command line's tests talk to: started by
// gateway.New and Run on loopback, as serve starts it, until the test ends.
type testApp struct {
	url     string
	dataDir string
	// stop shuts it down as SIGTERM does and waits until Run returned.
	stop func()
}

// startGateway runs a gateway on a temporary data dir with opts (loopback
// listeners on free ports, no logs unless opts.Logger).
func startGateway(t *testing.T, cfg *config.Config, opts gateway.Options) *testApp {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.HTTPAddr, opts.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	g, err := gateway.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testApp{url: g.URL(), dataDir: opts.DataDir, stop: stop}
}

func startApp(t *testing.T, cfg *config.Config) *testApp {
	t.Helper()
	return startGateway(t, cfg, gateway.Options{})
}

// startSeededApp is startApp with a reproducible router (gateway.Options.
// Seed): what the bandit does then depends only on the requests' order.
func startSeededApp(t *testing.T, cfg *config.Config, seed uint64) *testApp {
	t.Helper()
	return startGateway(t, cfg, gateway.Options{Seed: seed})
}

// startAuthApp is startApp with auth.mode keys, on Redis when redisURL is
// not "".
func startAuthApp(t *testing.T, redisURL string) *testApp {
	t.Helper()
	cfg := demoConfig(t, "")
	cfg.Auth.Mode = config.AuthKeys
	cfg.RedisURL = redisURL
	return startApp(t, cfg)
}

// demoConfig is examples/demo/config-embedded.yaml (mf@1, mf@2 behind
// home) with extra appended.
func demoConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(demoDir, "config-embedded.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(append(raw, []byte(extra)...), demoDir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// needONNXRuntime skips the test without the ONNX Runtime library, except
// under CI, where it must be installed.
func needONNXRuntime(t testing.TB) {
	t.Helper()
	if p := onnx.LibraryPath(""); p != "" {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	testenv.SkipOrFail(t, "ONNX Runtime library not found: run `make onnxruntime` (scripts/onnxruntime.sh) or set "+onnx.EnvLibrary)
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

// reportResp is a report with a lookup of an arm's counts.
type reportResp struct{ report.Report }

func (r *reportResp) arm(name string) (trials, successes uint64) {
	for _, a := range r.Arms {
		if a.Arm == name {
			return a.Trials, a.Successes
		}
	}
	return 0, 0
}

type authResp struct {
	status int
	body   []byte
}

// do sends a request with an optional Bearer key.
func do(t *testing.T, method, url, key string, body any) authResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return authResp{resp.StatusCode, raw}
}
