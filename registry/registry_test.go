package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/store"
)

type nopScorer struct{}

func (nopScorer) Predict(context.Context, *backend.Request) ([]backend.Item, error) { return nil, nil }

// drivers returns a "test" backend that fails to load when the path is
// "/bad" and publishes no versions (auto_arms may watch its models), and a
// "fixed" one that cannot list versions.
func drivers() *backend.Drivers {
	load := func(_ context.Context, s *backendtest.Spec, _ backend.LoadOptions) (backend.Scorer, error) {
		if s.Path == "/bad" {
			return nil, errors.New("items.npy: not found")
		}
		return nopScorer{}, nil
	}
	return backend.NewDrivers(
		backendtest.ListingDriver{Driver: backendtest.Driver{Name: "test", Loader: load},
			Versions: func(context.Context, *backendtest.Spec, string) ([]string, error) { return nil, nil }},
		backendtest.Driver{Name: "fixed", Loader: load})
}

func newReg(t *testing.T, db *store.DB) *Registry {
	t.Helper()
	r, err := New(context.Background(), db, drivers(), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openDB(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func code(err error) string {
	if f := fault.As(err); f != nil {
		return f.Code
	}
	if err != nil {
		return "unclassified: " + err.Error()
	}
	return ""
}

func TestVersionLifecycle(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := newReg(t, db)
	body := []byte(`{"backend": {"type": "test", "path": "/m"}}`)
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"register", func() error {
			_, created, err := r.PutVersion(ctx, "mf", "1", body)
			if err == nil && !created {
				return errors.New("want created")
			}
			return err
		}, ""},
		{"replace unused", func() error {
			_, created, err := r.PutVersion(ctx, "mf", "1", body)
			if err == nil && created {
				return errors.New("want replaced, not created")
			}
			return err
		}, ""},
		{"bad name", func() error { _, _, err := r.PutVersion(ctx, "m f", "1", body); return err }, "invalid_name"},
		{"bad version", func() error { _, _, err := r.PutVersion(ctx, "mf", "1@2", body); return err }, "invalid_version"},
		{"no backend", func() error { _, _, err := r.PutVersion(ctx, "mf", "2", []byte(`{}`)); return err }, "missing_field"},
		{"load fails", func() error {
			_, _, err := r.PutVersion(ctx, "mf", "2", []byte(`{"backend": {"type": "test", "path": "/bad"}}`))
			return err
		}, "invalid_model"},
		{"endpoint", func() error { _, _, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"]}`)); return err }, ""},
		{"replace in use", func() error { _, _, err := r.PutVersion(ctx, "mf", "1", body); return err }, "version_in_use"},
		{"delete in use", func() error { return r.DeleteVersion(ctx, "mf", "1") }, "version_in_use"},
		{"fallback not an arm", func() error {
			_, _, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "fallback": "mf@9"}`))
			return err
		}, "invalid_fallback"},
		{"duplicate arm", func() error {
			_, _, err := r.PutEndpoint(ctx, "x", []byte(`{"arms": ["mf@1", "mf@1"]}`))
			return err
		}, "duplicate_arm"},
		{"delete endpoint", func() error { return r.DeleteEndpoint(ctx, "home") }, ""},
		{"delete version", func() error { return r.DeleteVersion(ctx, "mf", "1") }, ""},
		{"delete again", func() error { return r.DeleteVersion(ctx, "mf", "1") }, "version_not_found"},
	}
	for _, s := range steps {
		if got := code(s.do()); got != s.want {
			t.Fatalf("%s: got %q, want %q", s.name, got, s.want)
		}
	}
	if r.HasVersion("mf@2") {
		t.Fatal("a version that failed to load was stored")
	}
}

func TestReloadKeepsStateAndPauses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	r := newReg(t, db)
	for _, v := range []string{"1", "2"} {
		if _, _, err := r.PutVersion(ctx, "mf", v, []byte(`{"backend": {"type": "test", "path": "/m"}, "metadata": {"v": "`+v+`"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"], "policy": {"segment_by": ["surface"], "min_share": 0.05}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetArmState(ctx, "home", "mf@2", Paused); err != nil {
		t.Fatal(err)
	}
	// Re-applying the same definition keeps the pause.
	if _, created, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"]}`)); err != nil || created {
		t.Fatalf("replace: created=%v err=%v", created, err)
	}
	db.Close()

	db = openDB(t, dir)
	defer db.Close()
	r = newReg(t, db)
	ep, err := r.Endpoint("home")
	if err != nil {
		t.Fatal(err)
	}
	if ep.ArmStates["mf@2"] != Paused || ep.ArmStates["mf@1"] != Active {
		t.Fatalf("arm states after reload: %v", ep.ArmStates)
	}
	if p := ep.Policy; p.MinShare != 0.01 || len(p.SegmentBy) != 0 || p.Prior != (Prior{1, 1}) || p.TrialsOn != "serve" ||
		p.AttributionWindow.String() != "24h" || p.StopRule != (StopRule{0.95, 0.01, 1000}) {
		t.Fatalf("replaced policy should be the defaults: %+v", p)
	}
	mv, err := r.Version("mf", "2")
	if err != nil || mv.Metadata["v"] != "2" {
		t.Fatalf("version after reload: %+v %v", mv, err)
	}
}

func TestUnloadableVersionAtStartIsUnavailable(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	// A version stored earlier whose files are gone now.
	if err := db.Put(ctx, store.Models, "mf@1", []byte(`{"name":"mf","version":"1","arm":"mf@1","backend":{"type":"test","path":"/bad"},"features":{}}`)); err != nil {
		t.Fatal(err)
	}
	r := newReg(t, db)
	v := r.Snapshot().Versions["mf@1"]
	if v == nil || v.Scorer != nil || v.LoadErr == nil {
		t.Fatalf("want the version registered but unavailable, got %+v", v)
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, tc := range []struct{ policy, field string }{
		{`{"type": "egreedy"}`, "policy.type"},
		{`{"prior": {"alpha": 0}}`, "policy.prior.alpha"},
		{`{"prior": {"beta": -1}}`, "policy.prior.beta"},
		{`{"segment_by": ["a", "a"]}`, "policy.segment_by[1]"},
		{`{"segment_by": ["a=b"]}`, "policy.segment_by[0]"},
		{`{"min_share": 1}`, "policy.min_share"},
		{`{"trials_on": "click"}`, "policy.trials_on"},
		{`{"attribution_window": "1 day"}`, "policy.attribution_window"},
		{`{"attribution_window": "-1h"}`, "policy.attribution_window"},
		{`{"stop_rule": {"p_best": 0.4}}`, "policy.stop_rule.p_best"},
		{`{"stop_rule": {"min_trials": -5}}`, "policy.stop_rule.min_trials"},
		{`{"colour": "red"}`, "policy.colour"},
		{`{"Type": "uniform"}`, "policy.Type"},
		{`{"type": "uniform", "type": "thompson"}`, "policy.type"},
		{`{"stop_rule": {"p_best": 0.9, "P_Best": 0.9}}`, "policy.stop_rule.P_Best"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			var in endpointBody
			err := fault.DecodeJSON([]byte(`{"arms": ["a@1"], "policy": `+tc.policy+`}`), &in)
			if err == nil {
				_, err = parsePolicy(in.Policy)
			}
			f := fault.As(err)
			if f == nil || f.Field != tc.field {
				t.Fatalf("got %v, want an error on %s", err, tc.field)
			}
		})
	}
}

// The durations of a policy are the same parsed from a body and read back
// from the store.
func TestPolicyDurationsSurviveStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	r := newReg(t, db)
	if _, _, err := r.PutVersion(ctx, "mf", "1", []byte(`{"backend": {"type": "test", "path": "/m"}}`)); err != nil {
		t.Fatal(err)
	}
	body := `{"arms": ["mf@1"], "policy": {"type": "discounted-thompson", "half_life": "72h", "attribution_window": "90m",
		"sticky": {"ttl": "1h"}, "guardrails": {"max_error_rate": 0.1, "window": "30s"}}}`
	ep, _, err := r.PutEndpoint(ctx, "home", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	loaded, err := newReg(t, db).Endpoint("home")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Policy{&ep.Policy, &loaded.Policy} {
		if p.AttributionWindow.Std() != 90*time.Minute || p.HalfLife.Std() != 72*time.Hour || p.Sticky.TTL.Std() != time.Hour || p.Guardrails.Window.Std() != 30*time.Second {
			t.Fatalf("durations %v %v %v %v", p.AttributionWindow.Std(), p.HalfLife.Std(), p.Sticky.TTL.Std(), p.Guardrails.Window.Std())
		}
		if p.AttributionWindow.String() != "90m" || p.HalfLife.String() != "72h" || p.Sticky.TTL.String() != "1h" || p.Guardrails.Window.String() != "30s" {
			t.Fatalf("durations not as written: %q %q %q %q", p.AttributionWindow, p.HalfLife, p.Sticky.TTL, p.Guardrails.Window)
		}
	}
}

// auto_arms may watch only a model whose backend can list its published
// versions; any other is refused, naming the backend.
func TestAutoArmsNeedsAListingBackend(t *testing.T) {
	ctx := context.Background()
	r := newReg(t, openDB(t, t.TempDir()))
	for _, v := range []struct{ model, typ string }{{"mf", "test"}, {"ext", "fixed"}} {
		if _, _, err := r.PutVersion(ctx, v.model, "1", []byte(`{"backend": {"type": "`+v.typ+`", "path": "/m"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["ext@1"], "auto_arms": {"model": "ext"}}`))
	if f := fault.As(err); f == nil || f.Code != "invalid_auto_arms" || f.Field != "auto_arms.model" || !strings.Contains(f.Message, "fixed backend") {
		t.Fatalf("auto_arms on a fixed backend: %v", err)
	}
	if _, _, err := r.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1"], "auto_arms": {"model": "mf"}}`)); err != nil {
		t.Fatalf("auto_arms on a listing backend: %v", err)
	}
}
