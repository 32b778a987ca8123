package registry

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
)

func version(path string) []byte {
	return []byte(`{"backend": {"type": "test", "path": "` + path + `"}}`)
}

// With a config that manages them, the config's entries are as it says
// at every apply, the API cannot change them but may pause and resume,
// and entries the config does not name stay the API's.
func TestApplyConfig(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := newReg(t, db)
	// An endpoint and a version created through the API before: not the
	// config's.
	if _, _, err := r.PutVersion(ctx, "other", "1", version("/o")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.PutEndpoint(ctx, "api-owned", []byte(`{"arms": ["other@1"]}`)); err != nil {
		t.Fatal(err)
	}
	vs := []ConfigVersion{{"mf", "1", version("/a")}, {"mf", "2", version("/b")}}
	es := []ConfigEndpoint{{"home", []byte(`{"arms": ["mf@1", "mf@2"]}`)}}
	if n, err := r.ApplyConfig(ctx, vs, es); err != nil || n != 3 {
		t.Fatalf("first apply: %d changed, %v; want 3", n, err)
	}

	refused := []struct {
		name string
		call func() error
	}{
		{"replace a version", func() error { _, _, err := r.PutVersionIf(ctx, "mf", "1", version("/x"), IfMatch{}); return err }},
		{"delete a version", func() error { return r.DeleteVersionIf(ctx, "mf", "2", IfMatch{}) }},
		{"replace the endpoint", func() error {
			_, _, err := r.PutEndpointIf(ctx, "home", []byte(`{"arms": ["mf@1"]}`), IfMatch{})
			return err
		}},
		{"delete the endpoint", func() error { return r.DeleteEndpointIf(ctx, "home", IfMatch{}) }},
		{"add an arm", func() error { _, err := r.AddArmIf(ctx, "home", "other@1", IfMatch{}); return err }},
	}
	for _, tc := range refused {
		t.Run("API: "+tc.name, func(t *testing.T) {
			if got := code(tc.call()); got != "managed_by_config" {
				t.Fatalf("got %q, want managed_by_config", got)
			}
		})
	}
	// The API's own entries and pause/resume are the API's.
	if _, err := r.AddArmIf(ctx, "api-owned", "mf@1", IfMatch{}); err != nil {
		t.Fatalf("an API endpoint: %v", err)
	}
	if _, _, err := r.PutVersionIf(ctx, "mf", "3", version("/c"), IfMatch{}); err != nil {
		t.Fatalf("a version the config does not name: %v", err)
	}
	if _, err := r.SetArmStateIf(ctx, "home", "mf@2", Paused, IfMatch{}); err != nil {
		t.Fatalf("pause: %v", err)
	}

	// The same config again changes nothing, and keeps the pause.
	before, _ := r.Endpoint("home")
	if n, err := r.ApplyConfig(ctx, vs, es); err != nil || n != 0 {
		t.Fatalf("same apply: %d changed, %v; want 0", n, err)
	}
	after, _ := r.Endpoint("home")
	if after.Revision != before.Revision || after.ArmStates["mf@2"] != Paused {
		t.Fatalf("revision %d → %d, mf@2 %s; want untouched and paused", before.Revision, after.Revision, after.ArmStates["mf@2"])
	}

	// A changed config: a version in use is replaced (the config is the
	// truth), the endpoint too, keeping mf@2's pause.
	vs[0].Body = version("/a2")
	es[0].Body = []byte(`{"arms": ["mf@1", "mf@2"], "fallback": "mf@1"}`)
	if n, err := r.ApplyConfig(ctx, vs, es); err != nil || n != 2 {
		t.Fatalf("changed apply: %d changed, %v; want 2", n, err)
	}
	mv, _ := r.Version("mf", "1")
	ep, _ := r.Endpoint("home")
	if mv.Revision != 2 || string(mustJSON(t, mv.Backend)) != string(mustJSON(t, mustVersion(t, r, "mf", "1", version("/a2")).Backend)) {
		t.Errorf("mf@1 after the change: revision %d, backend %s", mv.Revision, mustJSON(t, mv.Backend))
	}
	if ep.Fallback != "mf@1" || ep.ArmStates["mf@2"] != Paused {
		t.Errorf("home after the change: fallback %q, mf@2 %s", ep.Fallback, ep.ArmStates["mf@2"])
	}

	// A config that no longer names the endpoint hands it to the API.
	if _, err := r.ApplyConfig(ctx, vs, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.PutEndpointIf(ctx, "home", []byte(`{"arms": ["mf@1"]}`), IfMatch{}); err != nil {
		t.Fatalf("an endpoint the config no longer names: %v", err)
	}

	// A bad entry anywhere: nothing is applied.
	bad := append([]ConfigVersion{{"mf", "9", version("/z")}}, ConfigVersion{"mf", "bad version!", version("/z")})
	if _, err := r.ApplyConfig(ctx, bad, nil); err == nil || r.HasVersion("mf@9") {
		t.Fatalf("a config with a bad entry: %v, mf@9 registered %v", err, r.HasVersion("mf@9"))
	}
}

// Replicas applying the same config at once agree: each entry is stored
// once, and every registry serves it.
func TestApplyConfigReplicas(t *testing.T) {
	for name, db := range sharedStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			vs := []ConfigVersion{{"mf", "1", version("/a")}}
			es := []ConfigEndpoint{{"home", []byte(`{"arms": ["mf@1"]}`)}}
			regs := [3]*Registry{newRegOn(t, db), newRegOn(t, db), newRegOn(t, db)}
			var wg sync.WaitGroup
			errs := make([]error, len(regs))
			for i, r := range regs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = r.ApplyConfig(ctx, vs, es)
				}()
			}
			wg.Wait()
			for i, r := range regs {
				if errs[i] != nil {
					t.Fatalf("replica %d: %v", i, errs[i])
				}
				mv, err := r.Version("mf", "1")
				ep, err2 := r.Endpoint("home")
				if err != nil || err2 != nil || mv.Revision != 1 || ep.Revision != 1 {
					t.Fatalf("replica %d: version %+v %v, endpoint %+v %v; want both at revision 1", i, mv, err, ep, err2)
				}
			}
		})
	}
}

func mustVersion(t *testing.T, r *Registry, name, version string, body []byte) *ModelVersion {
	t.Helper()
	mv, err := r.ParseVersion(name, version, body)
	if err != nil {
		t.Fatal(err)
	}
	return mv
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
