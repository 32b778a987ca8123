package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/gateway"
	"github.com/modelgate/modelgate/internal/apitest"
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
	stop := apitest.Run(t, g.Run)
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
	return apitest.ParseConfig(t, filepath.Join(demoDir, "config-embedded.yaml"), demoDir, extra)
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

// call is apitest.Call, under the short name the tests use.
func call(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	return apitest.Call(t, method, url, body, out)
}

// reportResp is a report with a lookup of an arm's counts.
type reportResp struct{ report.Report }

func (r *reportResp) arm(name string) (trials uint64, successes float64) {
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
	r := apitest.Do(t, method, url, key, body)
	return authResp{r.Status, r.Body}
}
