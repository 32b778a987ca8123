package gateway

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/internal/apitest"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/router"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// demoDir is the bundled demo, used as real model files by the tests.
var demoDir = filepath.Join("..", "examples", "demo")

// testApp is the whole gateway in-process on a data dir, started by New
// and Run on loopback listeners, as serve starts it.
type testApp struct {
	*Gateway
	url      string
	grpcAddr string
	dataDir  string
	// stop shuts the gateway down as SIGTERM does and waits until Run
	// returned (everything closed, the data dir free); the test's cleanup
	// calls it too.
	stop func()
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
	return apitest.ParseConfig(t, path, demoDir, extra)
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

func startApp(t testing.TB, cfg *config.Config) *testApp {
	t.Helper()
	return startGateway(t, cfg, Options{}, openedStore{})
}

// runOn runs the gateway on dir (an existing data dir is reopened); stop
// shuts it down as SIGTERM would and closes the data dir, so the test can
// start it again on dir.
func runOn(t testing.TB, cfg *config.Config, dir string) (url string, stop func()) {
	t.Helper()
	a := startGateway(t, cfg, Options{DataDir: dir}, openedStore{})
	return a.url, a.stop
}

// newTestGateway builds a gateway on dir without running it; the caller
// closes it.
func newTestGateway(cfg *config.Config, dir string, log *slog.Logger) (*Gateway, error) {
	return New(context.Background(), cfg, Options{DataDir: dir, Logger: log, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"})
}

// startGateway builds the gateway with opts (defaults: a temporary data
// dir, loopback listeners on free ports, no logs), on db when it holds a store,
// and runs it until stop or the end of the test. Run must end without an
// error.
func startGateway(t testing.TB, cfg *config.Config, opts Options, db openedStore) *testApp {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.HTTPListener == nil && opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.GRPCListener == nil && opts.GRPCAddr == "" {
		opts.GRPCAddr = "127.0.0.1:0"
	}
	g, err := newGateway(context.Background(), cfg, opts, db)
	if err != nil {
		t.Fatal(err)
	}
	stop := apitest.Run(t, g.Run)
	return &testApp{Gateway: g, url: g.URL(), grpcAddr: g.GRPCAddr().String(), dataDir: opts.DataDir, stop: stop}
}

// call is apitest.Call, under the short name the tests use.
func call(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	return apitest.Call(t, method, url, body, out)
}

// The API's own answer types, under the short names the tests use.
type (
	recResp = router.Response
	fbResp  = feedback.Result
	errResp = api.ErrorBody
)

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
