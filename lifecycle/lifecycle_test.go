package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/store"
)

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// drivers are the backends the tests register versions of.
func drivers() *backend.Drivers { return backend.NewDrivers(embedded.Driver{}) }

// A new version directory in TF Serving's layout becomes an arm that gets
// traffic within the watch interval; removing it drains the arm.
func TestNewVersionDirectoryBecomesAnArm(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := filepath.Join(t.TempDir(), "models", "mf")
	demo := filepath.Join("..", "examples", "demo", "models", "mf")
	copyDir(t, filepath.Join(demo, "1"), filepath.Join(base, "1"))

	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := registry.New(ctx, db, drivers(), nil, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutVersion(ctx, "mf", "1", []byte(`{"backend": {"type": "embedded", "path": "`+filepath.Join(base, "1")+`"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "policy": {"min_share": 0.2}, "auto_arms": {"model": "mf", "interval": "1s"}}`)); err != nil {
		t.Fatal(err)
	}
	w := New(reg, drivers(), nil)
	go w.Run(ctx)
	signer, _ := predtoken.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	rt := router.New(reg, &counters.Table{}, signer, nil, router.Options{})

	copyDir(t, filepath.Join(demo, "2"), filepath.Join(base, "2"))
	if err := os.MkdirAll(filepath.Join(base, "tmp-upload"), 0o755); err != nil { // not a version
		t.Fatal(err)
	}
	testenv.WaitFor(t, 3*time.Second, func() bool {
		ep, _ := reg.Endpoint("home")
		return len(ep.Arms) == 2 && ep.Arms[1] == "mf@2" && ep.ArmStates["mf@2"] == registry.Active
	})
	mv, err := reg.Version("mf", "2")
	if err != nil {
		t.Fatal(err)
	}
	if spec, ok := mv.Backend.Config.(*embedded.Spec); !ok || spec.Path != filepath.Join(base, "2") || mv.Metadata["registered_by"] != "auto_arms" {
		t.Fatalf("auto-registered version: %+v %v", mv, err)
	}
	served := map[string]int{}
	for i := 0; i < 200; i++ {
		resp, err := rt.Recommend(ctx, &router.Request{Endpoint: "home", UserID: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		served[resp.Arm]++
	}
	if served["mf@2"] == 0 {
		t.Fatalf("the new arm got no traffic: %v", served)
	}

	if err := os.RemoveAll(filepath.Join(base, "2")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 3*time.Second, func() bool {
		ep, _ := reg.Endpoint("home")
		return ep.ArmStates["mf@2"] == registry.Paused
	})
	for i := 0; i < 100; i++ {
		resp, err := rt.Recommend(ctx, &router.Request{Endpoint: "home", UserID: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Arm == "mf@2" {
			t.Fatal("a drained arm served a request")
		}
	}
}

func TestPollErrors(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, _ := registry.New(ctx, db, drivers(), nil, registry.Options{})
	dir := filepath.Join("..", "examples", "demo", "models", "mf", "1")
	if _, _, err := reg.PutVersion(ctx, "flat", "a", []byte(`{"backend": {"type": "embedded", "path": "`+dir+`"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutEndpoint(ctx, "e", []byte(`{"arms": ["flat@a"], "auto_arms": {"model": "flat"}}`)); err != nil {
		t.Fatal(err)
	}
	// The version's directory is not named after its version: nothing to watch,
	// an error to log, and the arm is not drained.
	w := New(reg, drivers(), nil)
	if err := w.Poll(ctx, "e"); err == nil {
		t.Fatal("want an error for a directory outside the <base>/<version> layout")
	}
	if ep, _ := reg.Endpoint("e"); ep.ArmStates["flat@a"] != registry.Active {
		t.Fatal("a failed listing drained an arm")
	}
}
