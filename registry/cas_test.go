package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/internal/atonce"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

// sharedStores opens each kind of store the registry runs on; every
// registry made over one of them is like a replica whose snapshot is never
// reloaded.
func sharedStores(t *testing.T) map[string]Store {
	t.Helper()
	db := openDB(t, t.TempDir())
	t.Cleanup(func() { db.Close() })
	srv := redistest.Start(t, redistest.Options{})
	rs, err := redisstore.Open(context.Background(), srv.URL(), redisstore.Options{WALDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return map[string]Store{"embedded": db, "redis": rs}
}

func newRegOn(t *testing.T, db Store) *Registry {
	t.Helper()
	r, err := New(context.Background(), db, drivers(), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// replicasOn registers mf@1..mf@6 and returns three registries over db
// that all know those versions.
func replicasOn(t *testing.T, db Store) [3]*Registry {
	t.Helper()
	ctx := context.Background()
	first := newRegOn(t, db)
	for v := 1; v <= 6; v++ {
		if _, _, err := first.PutVersion(ctx, "mf", fmt.Sprint(v), []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	return [3]*Registry{first, newRegOn(t, db), newRegOn(t, db)}
}

// stored reads an endpoint as the store holds it, through a new registry.
func stored(t *testing.T, db Store, name string) *Endpoint {
	t.Helper()
	ep, err := newRegOn(t, db).Endpoint(name)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// Each change reads the stored endpoint, not the registry's snapshot: a
// registry that never saw another's changes (a replica before its reload)
// still keeps them.
func TestStaleSnapshotLosesNoChange(t *testing.T) {
	for name, db := range sharedStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := replicasOn(t, db)
			if _, _, err := r[0].PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2", "mf@3"]}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := r[1].SetArmState(ctx, "home", "mf@1", Paused); err != nil {
				t.Fatalf("pause on a registry that has not seen the endpoint: %v", err)
			}
			if _, err := r[2].AddArm(ctx, "home", "mf@4"); err != nil {
				t.Fatal(err)
			}
			if _, err := r[0].PauseArm(ctx, "home", "mf@3", "guardrail: error rate"); err != nil {
				t.Fatal(err)
			}
			body := []byte(`{"arms": ["mf@1", "mf@2", "mf@3", "mf@4"], "policy": {"min_share": 0.05}}`)
			_, _, err := r[1].PutEndpointIf(ctx, "home", body, IfMatch{Given: true, Revisions: []uint64{3}})
			if code(err) != "precondition_failed" {
				t.Fatalf("PUT with a stale If-Match: %v", err)
			}
			if ep := stored(t, db, "home"); ep.Revision != 4 || ep.Policy.MinShare != 0.01 {
				t.Fatalf("a refused PUT changed the endpoint: revision %d, min_share %v", ep.Revision, ep.Policy.MinShare)
			}
			if _, _, err := r[1].PutEndpointIf(ctx, "home", body, IfMatch{Given: true, Revisions: []uint64{4}}); err != nil {
				t.Fatal(err)
			}
			ep := stored(t, db, "home")
			want := map[string]ArmState{"mf@1": Paused, "mf@2": Active, "mf@3": Paused, "mf@4": Active}
			if !mapsEqual(ep.ArmStates, want) || ep.Policy.MinShare != 0.05 || ep.Revision != 5 ||
				ep.ArmReasons["mf@3"] != "guardrail: error rate" {
				t.Fatalf("stored endpoint: states %v, reasons %v, min_share %v, revision %d",
					ep.ArmStates, ep.ArmReasons, ep.Policy.MinShare, ep.Revision)
			}
			if got, _ := r[1].Endpoint("home"); got.Revision != 5 {
				t.Fatalf("the writer's snapshot is at revision %d, not what it stored", got.Revision)
			}
		})
	}
}

// Changes made at the same time through three registries over one store,
// all of which have seen the endpoint, all take effect, each exactly once.
func TestConcurrentChangesAllTakeEffect(t *testing.T) {
	for name, db := range sharedStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := replicasOn(t, db)
			for round := 0; round < 10; round++ {
				ep := fmt.Sprint("home", round)
				if _, _, err := r[0].PutEndpoint(ctx, ep, []byte(`{"arms": ["mf@1", "mf@2", "mf@3"]}`)); err != nil {
					t.Fatal(err)
				}
				for _, rr := range r[1:] { // every replica has seen the endpoint
					if _, err := rr.Reload(ctx); err != nil {
						t.Fatal(err)
					}
				}
				changes := []func() error{
					func() error { _, err := r[round%3].SetArmState(ctx, ep, "mf@1", Paused); return err },
					func() error { _, err := r[(round+1)%3].AddArm(ctx, ep, "mf@4"); return err },
					func() error { _, err := r[(round+2)%3].PauseArm(ctx, ep, "mf@3", "guardrail"); return err },
					func() error { _, err := r[round%3].AddArm(ctx, ep, "mf@5"); return err },
					func() error { _, err := r[(round+1)%3].SetArmState(ctx, ep, "mf@2", Paused); return err },
				}
				if err := atonce.Run(changes...); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				got := stored(t, db, ep)
				want := map[string]ArmState{"mf@1": Paused, "mf@2": Paused, "mf@3": Paused, "mf@4": Active, "mf@5": Active}
				if !mapsEqual(got.ArmStates, want) || len(got.Arms) != 5 || got.Revision != 6 {
					t.Fatalf("round %d: stored arms %v, states %v, revision %d; want every change once (revision 6)",
						round, got.Arms, got.ArmStates, got.Revision)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]ArmState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// If-Match: a stale or absent revision refuses the change (412) and
// nothing is stored; the current one, one of a list, or "*" lets it
// through, and each stored change adds one to the revision.
func TestIfMatch(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := newReg(t, db)
	vbody := []byte(`{"backend": {"type": "test", "path": "/m"}}`)
	at := func(revs ...uint64) IfMatch { return IfMatch{Given: true, Revisions: revs} }
	steps := []struct {
		name string
		do   func() error
		want string
		rev  uint64 // the endpoint's stored revision afterwards; 0: no endpoint
	}{
		{"register a version with If-Match", func() error {
			_, _, err := r.PutVersionIf(ctx, "mf", "1", vbody, IfMatch{Given: true, Any: true})
			return err
		}, "precondition_failed", 0},
		{"register", func() error { _, _, err := r.PutVersionIf(ctx, "mf", "1", vbody, IfMatch{}); return err }, "", 0},
		{"replace a stale version", func() error { _, _, err := r.PutVersionIf(ctx, "mf", "1", vbody, at(2)); return err }, "precondition_failed", 0},
		{"replace the current version", func() error { _, _, err := r.PutVersionIf(ctx, "mf", "1", vbody, at(1)); return err }, "", 0},
		{"register mf@2", func() error { _, _, err := r.PutVersion(ctx, "mf", "2", vbody); return err }, "", 0},
		{"create with If-Match", func() error {
			_, _, err := r.PutEndpointIf(ctx, "home", []byte(`{"arms": ["mf@1"]}`), at(1))
			return err
		}, "precondition_failed", 0},
		{"create", func() error { _, _, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"]}`)); return err }, "", 1},
		{"add an arm, stale", func() error { _, err := r.AddArmIf(ctx, "home", "mf@2", at(0)); return err }, "precondition_failed", 1},
		{"add an arm, weak tag only", func() error { _, err := r.AddArmIf(ctx, "home", "mf@2", IfMatch{Given: true}); return err }, "precondition_failed", 1},
		{"add an arm, one of a list", func() error { _, err := r.AddArmIf(ctx, "home", "mf@2", at(7, 1)); return err }, "", 2},
		{"pause, stale", func() error { _, err := r.SetArmStateIf(ctx, "home", "mf@1", Paused, at(1)); return err }, "precondition_failed", 2},
		{"pause, any", func() error {
			_, err := r.SetArmStateIf(ctx, "home", "mf@1", Paused, IfMatch{Given: true, Any: true})
			return err
		}, "", 3},
		{"pause a missing endpoint", func() error { _, err := r.SetArmStateIf(ctx, "nope", "mf@1", Paused, at(1)); return err }, "endpoint_not_found", 3},
		{"automatic pause of a paused arm", func() error { _, err := r.PauseArm(ctx, "home", "mf@1", "guardrail"); return err }, "", 3},
		{"replace, stale", func() error {
			_, _, err := r.PutEndpointIf(ctx, "home", []byte(`{"arms": ["mf@1"]}`), at(2))
			return err
		}, "precondition_failed", 3},
		{"replace", func() error {
			_, _, err := r.PutEndpointIf(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"]}`), at(3))
			return err
		}, "", 4},
		{"delete, stale", func() error { return r.DeleteEndpointIf(ctx, "home", at(3)) }, "precondition_failed", 4},
		{"delete a version, stale", func() error { return r.DeleteVersionIf(ctx, "mf", "1", at(1)) }, "version_in_use", 4},
		{"delete", func() error { return r.DeleteEndpointIf(ctx, "home", at(4)) }, "", 0},
		{"delete a version, stale", func() error { return r.DeleteVersionIf(ctx, "mf", "1", at(1)) }, "precondition_failed", 0},
		{"delete a version", func() error { return r.DeleteVersionIf(ctx, "mf", "1", at(2)) }, "", 0},
	}
	for _, s := range steps {
		if got := code(s.do()); got != s.want {
			t.Fatalf("%s: got %q, want %q", s.name, got, s.want)
		}
		m, err := db.List(ctx, store.Endpoints)
		if err != nil {
			t.Fatal(err)
		}
		var rev uint64
		if raw, ok := m["home"]; ok {
			var ep Endpoint
			if err := json.Unmarshal(raw, &ep); err != nil {
				t.Fatal(err)
			}
			rev = ep.Revision
		}
		if rev != s.rev {
			t.Fatalf("%s: the stored endpoint is at revision %d, want %d", s.name, rev, s.rev)
		}
	}
	if r.HasVersion("mf@1") || !r.HasVersion("mf@2") {
		t.Fatal("the versions are not as the steps left them")
	}
}

// Records stored before revisions existed load at revision 1, keep being
// the same to Reload, and go on from there.
func TestRecordsWithoutRevisionLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	defer db.Close()
	oldVersion := `{"name":"mf","version":"1","arm":"mf@1","backend":{"type":"test","path":"/m"},"features":{},"metadata":{},"created_at":"2026-11-02T10:00:00Z"}`
	oldEndpoint := `{"name":"home","arms":["mf@1"],"arm_states":{"mf@1":"active"},"policy":{"type":"thompson","prior":{"alpha":1,"beta":1},"segment_by":[],"min_share":0.01,"trials_on":"serve","attribution_window":"24h","stop_rule":{"p_best":0.95,"value_remaining":0.01,"min_trials":1000},"segment_prior_weight":0},"created_at":"2026-11-02T10:00:00Z","updated_at":"2026-11-02T10:00:00Z"}`
	if err := db.Put(ctx, store.Models, "mf@1", []byte(oldVersion)); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, store.Endpoints, "home", []byte(oldEndpoint)); err != nil {
		t.Fatal(err)
	}
	r := newReg(t, db)
	ep, err := r.Endpoint("home")
	if err != nil {
		t.Fatal(err)
	}
	mv, err := r.Version("mf", "1")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Revision != 1 || mv.Revision != 1 {
		t.Fatalf("old records read at revisions %d (endpoint) and %d (version), want 1", ep.Revision, mv.Revision)
	}
	if changed, err := r.Reload(ctx); err != nil || changed {
		t.Fatalf("Reload of unchanged old records: changed=%v err=%v", changed, err)
	}
	if _, err := r.SetArmStateIf(ctx, "home", "mf@1", Paused, IfMatch{Given: true, Revisions: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	m, _ := db.List(ctx, store.Endpoints)
	var got Endpoint
	if err := json.Unmarshal(m["home"], &got); err != nil {
		t.Fatal(err)
	}
	if got.Revision != 2 || got.ArmStates["mf@1"] != Paused || !slices.Equal(got.Arms, []string{"mf@1"}) ||
		got.CreatedAt.Format("2006-01-02") != "2026-11-02" {
		t.Fatalf("stored after a pause: %s", m["home"])
	}
}

// A guardrail pausing an arm that another replica paused already changes
// nothing and records nothing; a pause through the API is recorded.
func TestAutomaticPauseOfPausedArmIsNoChange(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := replicasOn(t, db)
	log := audit.New(db, nil)
	var err error
	if r[1], err = New(ctx, db, drivers(), nil, Options{Audit: log}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r[0].PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r[1].Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r[0].SetArmState(ctx, "home", "mf@1", Paused); err != nil {
		t.Fatal(err)
	}
	// r[1] has not reloaded: its snapshot still shows mf@1 active.
	ep, err := r[1].PauseArm(ctx, "home", "mf@1", "guardrail: p99")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Revision != 2 || ep.ArmReasons["mf@1"] != "" || ep.ArmStates["mf@1"] != Paused {
		t.Fatalf("after the guardrail's pause: revision %d, states %v, reasons %v", ep.Revision, ep.ArmStates, ep.ArmReasons)
	}
	if got := stored(t, db, "home"); got.Revision != 2 {
		t.Fatalf("stored revision %d, want 2: the guardrail wrote", got.Revision)
	}
	entries, err := log.List(ctx, 10)
	if err != nil || len(entries) != 0 {
		t.Fatalf("audit entries %v, %v; want none", entries, err)
	}
	if _, err := r[1].SetArmState(ctx, "home", "mf@2", Paused); err != nil {
		t.Fatal(err)
	}
	if entries, _ := log.List(ctx, 10); len(entries) != 1 || entries[0].Action != "pause_arm" || entries[0].Target != "home/mf@2" {
		t.Fatalf("audit entries after a pause: %+v", entries)
	}
}
