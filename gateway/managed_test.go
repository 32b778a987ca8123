package gateway

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/registry"
)

// managedConfig writes the embedded demo's config to a file, with
// registry.managed as given and min_share and mf@1's note as given, and
// loads it.
func managedConfig(t *testing.T, path, managed, minShare, note string) *config.Config {
	t.Helper()
	abs, err := filepath.Abs(demoDir)
	if err != nil {
		t.Fatal(err)
	}
	doc := `registry: {managed: ` + managed + `}
models:
  - {name: mf, version: 1, backend: {type: embedded, path: ` + filepath.Join(abs, "models", "mf", "1") + `}, metadata: {note: "` + note + `"}}
  - {name: mf, version: 2, backend: {type: embedded, path: ` + filepath.Join(abs, "models", "mf", "2") + `}}
endpoints:
  - {name: home, arms: [mf@1, mf@2], fallback: mf@1, policy: {type: thompson, min_share: ` + minShare + `}}
`
	// Written whole and renamed, as a ConfigMap update swaps its file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// What this answers: a changed config used to be ignored after the
// first start, because the stored entry won for ever. With
// registry.managed: config the config wins at every start and while
// running, the API may not change its entries, and a pause through the API
// holds across restarts.
func TestRegistryManagedByConfig(t *testing.T) {
	dir, cfgDir := t.TempDir(), t.TempDir()
	path := filepath.Join(cfgDir, "config.yaml")
	state := func(url string) (minShare float64, note string, mf2 string) {
		t.Helper()
		var ep registry.Endpoint
		if st := call(t, "GET", url+"/v1/endpoints/home", nil, &ep); st != 200 {
			t.Fatalf("get endpoint: %d", st)
		}
		var mv registry.ModelVersion
		if st := call(t, "GET", url+"/v1/models/mf/versions/1", nil, &mv); st != 200 {
			t.Fatalf("get version: %d", st)
		}
		n, _ := mv.Metadata["note"].(string)
		return ep.Policy.MinShare, n, string(ep.ArmStates["mf@2"])
	}

	// First start, the store's own way: the config seeds once.
	url, stop := runOn(t, managedConfig(t, path, "api", "0.02", "first"), dir)
	if st := call(t, "PATCH", url+"/v1/endpoints/home/arms/mf@2", map[string]any{"state": "paused"}, nil); st != 200 {
		t.Fatalf("pause: %d", st)
	}
	stop()
	// A changed config under managed: api is ignored, as before.
	url, stop = runOn(t, managedConfig(t, path, "api", "0.05", "second"), dir)
	if ms, note, _ := state(url); ms != 0.02 || note != "first" {
		t.Fatalf("managed api: min_share %v, note %q; want the stored 0.02, first", ms, note)
	}
	stop()

	// managed: config: the config wins at start, the pause holds.
	cfg := managedConfig(t, path, "config", "0.05", "second")
	logs := &syncBuffer{}
	a := startGateway(t, cfg, Options{DataDir: dir, ConfigPoll: 20 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}, openedStore{})
	if ms, note, mf2 := state(a.url); ms != 0.05 || note != "second" || mf2 != "paused" {
		t.Fatalf("managed config at start: min_share %v, note %q, mf@2 %s; want 0.05, second, paused", ms, note, mf2)
	}
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/v1/endpoints/home", map[string]any{"arms": []string{"mf@1"}}},
		{"DELETE", "/v1/endpoints/home", nil},
		{"POST", "/v1/endpoints/home/arms", map[string]any{"arm": "mf@1"}},
		{"PUT", "/v1/models/mf/versions/1", map[string]any{"backend": map[string]any{"type": "embedded", "path": "/x"}}},
		{"DELETE", "/v1/models/mf/versions/2", nil},
	} {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if st := call(t, tc.method, a.url+tc.path, tc.body, &e); st != 409 || e.Error.Code != "managed_by_config" {
			t.Errorf("%s %s: %d %s; want 409 managed_by_config", tc.method, tc.path, st, e.Error.Code)
		}
	}
	if st := call(t, "PATCH", a.url+"/v1/endpoints/home/arms/mf@2", map[string]any{"state": "active"}, nil); st != 200 {
		t.Fatalf("resume a managed endpoint's arm: %d", st)
	}

	// The file changes while the gateway runs: its entries follow.
	managedConfig(t, path, "config", "0.1", "third")
	testenv.WaitFor(t, 10*time.Second, func() bool {
		ms, note, mf2 := state(a.url)
		return ms == 0.1 && note == "third" && mf2 == "active"
	})
	// A broken file changes nothing, once the watcher has read it.
	if err := os.WriteFile(path, []byte("models: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "config file changed but is invalid") })
	if ms, note, _ := state(a.url); ms != 0.1 || !strings.HasPrefix(note, "third") {
		t.Fatalf("after a broken file: min_share %v, note %q", ms, note)
	}
	// The recommend path serves throughout.
	if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, nil); st != 200 {
		t.Fatalf("recommend: %d", st)
	}
}
