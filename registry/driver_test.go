package registry

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/store"
)

// listSpec is the config of the "list" backend below, a backend the
// registry has never heard of: a fixed ranking.
type listSpec struct {
	Items     []string `json:"items"`
	TimeoutMS int      `json:"timeout_ms,omitempty"`
}

func (s *listSpec) Check() error {
	if len(s.Items) == 0 {
		return fault.Field("backend.items", "missing_field", "a list backend needs items")
	}
	return nil
}

func (s *listSpec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

type listDriver struct{}

func (listDriver) Type() string              { return "list" }
func (listDriver) NewConfig() backend.Config { return new(listSpec) }
func (listDriver) SpanName() string          { return "list.predict" }
func (listDriver) Load(_ context.Context, cfg backend.Config, _ backend.LoadOptions) (backend.Scorer, error) {
	return listScorer(cfg.(*listSpec).Items), nil
}

type listScorer []string

func (l listScorer) Predict(_ context.Context, req *backend.Request) ([]backend.Item, error) {
	var out []backend.Item
	for i, id := range l {
		if len(out) < req.K {
			out = append(out, backend.Item{ID: id, Score: float64(len(l) - i)})
		}
	}
	return out, nil
}

// A new backend is one driver in the set: the registry validates its
// config, loads, stores and serves its versions, and loads them again from
// the store, without knowing anything about it.
func TestNewBackendTypeIsOneDriver(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	drivers := backend.NewDrivers(listDriver{})
	r, err := New(ctx, db, drivers, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body, code, field, msg string
	}{
		{`{"backend": {"type": "list"}}`, "missing_field", "backend.items", "needs items"},
		{`{"backend": {"type": "list", "items": ["a"], "path": "/m"}}`, "unknown_field", "backend.path", "unknown field"},
		{`{"backend": {"type": "list", "items": "a"}}`, "invalid_type", "backend.items", "expected an array"},
		{`{"backend": {"type": "list", "items": ["a"], "timeout_ms": 60001}}`, "invalid_backend", "backend.timeout_ms", "0..60000"},
		{`{"backend": {"type": "embedded", "path": "/m"}}`, "unsupported_backend", "backend.type", `"embedded" is not available (have: [list])`},
	} {
		_, _, err := r.PutVersion(ctx, "top", "0", []byte(tc.body))
		f := fault.As(err)
		if f == nil || f.Code != tc.code || f.Field != tc.field || !strings.Contains(f.Message, tc.msg) {
			t.Errorf("%s: got %v, want %s at %s saying %q", tc.body, err, tc.code, tc.field, tc.msg)
		}
	}
	body := `{"backend": {"type": "list", "items": ["a", "b", "c"], "timeout_ms": 30}}`
	mv, _, err := r.PutVersion(ctx, "top", "1", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(mv.Backend); string(got) != `{"type":"list","items":["a","b","c"],"timeout_ms":30}` {
		t.Errorf("backend as returned: %s", got)
	}
	serve := func(r *Registry) {
		t.Helper()
		v := r.Snapshot().Versions["top@1"]
		if v == nil || v.Scorer == nil || v.SpanName != "list.predict" || v.Spec.Backend.Timeout() != 30*time.Millisecond {
			t.Fatalf("version top@1: %+v", v)
		}
		items, err := v.Scorer.Predict(ctx, &backend.Request{K: 2})
		if err != nil || len(items) != 2 || items[0].ID != "a" || items[1].ID != "b" {
			t.Fatalf("Predict = %v, %v", items, err)
		}
	}
	serve(r)
	r.Close()
	db.Close()

	db = openDB(t, dir)
	defer db.Close()
	models, err := db.List(ctx, store.Models)
	if raw := models["top@1"]; err != nil || !strings.Contains(string(raw), `"backend":{"type":"list","items":["a","b","c"],"timeout_ms":30}`) {
		t.Fatalf("stored record %s, %v", models["top@1"], err)
	}
	r2, err := New(ctx, db, drivers, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	serve(r2)
	if changed, err := r2.Reload(ctx); err != nil || changed {
		t.Errorf("Reload of an unchanged store = %v, %v; want no change", changed, err)
	}
}

// Records stored before the backends had their own configs (one struct
// with every backend's fields, in this member order) load into their
// drivers' configs and encode back byte for byte, so a data dir keeps its
// shape and a reload finds nothing changed.
func TestStoredBackendsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	records := map[string]string{
		"e@1": `{"name":"e","version":"1","arm":"e@1","backend":{"type":"embedded","path":"/nonexistent/e/1","timeout_ms":20},"features":{},"metadata":{},"created_at":"2026-01-02T03:04:05Z","revision":2}`,
		"t@1": `{"name":"t","version":"1","arm":"t@1","backend":{"type":"tfserving","target":"127.0.0.1:1","model_name":"ranker","version":7,"signature_name":"serving_default","timeout_ms":50,"outputs":{"scores":"scores","ids":"ids"},"tls":{"ca_file":"/ca.pem","server_name":"tf.test"}},"features":{"inputs":{"u":{"from":"user_id","dtype":"string"}}},"metadata":{"owner":"x"},"created_at":"2026-01-02T03:04:05Z","revision":1}`,
		"t@2": `{"name":"t","version":"2","arm":"t@2","backend":{"type":"tfserving","target":"127.0.0.1:1","model_name":"ranker","version_label":"canary","signature_name":"sig","outputs":{"scores":"s"}},"features":{},"metadata":{},"created_at":"2026-01-02T03:04:05Z","revision":1}`,
		"o@1": `{"name":"o","version":"1","arm":"o@1","backend":{"type":"onnx","path":"/nonexistent/o/1","timeout_ms":20,"outputs":{"scores":"scores"},"batching":{"max_batch_size":32,"batch_timeout_us":200}},"features":{},"metadata":{},"created_at":"2026-01-02T03:04:05Z","revision":1}`,
		"x@1": `{"name":"x","version":"1","arm":"x@1","backend":{"type":"torchscript","path":"/m"},"features":{},"metadata":{},"created_at":"2026-01-02T03:04:05Z","revision":1}`,
	}
	for key, rec := range records {
		if err := db.Put(ctx, store.Models, key, []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	pool := tfserving.NewPool()
	defer pool.Close()
	r, err := New(ctx, db, backend.NewDrivers(embedded.Driver{}, tfserving.NewDriver(pool), onnx.NewDriver("", 0)), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snap := r.Snapshot()
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		v := snap.Versions[key]
		if v == nil {
			t.Fatalf("%s did not load", key)
		}
		got, err := json.Marshal(&v.Spec)
		if err != nil || string(got) != records[key] {
			t.Errorf("%s encodes as\n%s (%v), stored as\n%s", key, got, err, records[key])
		}
	}
	if snap.Versions["t@1"].Spec.Backend.Timeout() != 50*time.Millisecond {
		t.Errorf("t@1 timeout %v, want 50ms", snap.Versions["t@1"].Spec.Backend.Timeout())
	}
	if f := fault.As(snap.Versions["x@1"].LoadErr); f == nil || f.Code != "unsupported_backend" {
		t.Errorf("a stored type without a driver: %v, want unsupported_backend", snap.Versions["x@1"].LoadErr)
	}
	if changed, err := r.Reload(ctx); err != nil || changed {
		t.Errorf("Reload of an unchanged store = %v, %v; want no change", changed, err)
	}
}

// A backend that is not an object is refused as the body's decoding always
// refused it.
func TestBackendNotAnObject(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := newReg(t, db)
	for _, tc := range []struct{ body, code, msg string }{
		{`{"backend": 3}`, "invalid_type", "expected an object, got JSON number 3"},
		{`{"backend": ["test"]}`, "invalid_type", "expected an object, got JSON array"},
		{`{"backend": null}`, "missing_field", "required"},
	} {
		_, err := r.ParseVersion("m", "1", []byte(tc.body))
		if f := fault.As(err); f == nil || f.Code != tc.code || f.Field != "backend" || !strings.Contains(f.Message, tc.msg) {
			t.Errorf("%s: got %v, want %s saying %q", tc.body, err, tc.code, tc.msg)
		}
	}
}
