package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/store"
)

// switchable is a scorer whose health the test sets.
type switchable struct{ healthy *atomic.Bool }

func (s switchable) Predict(context.Context, *backend.Request) ([]backend.Item, error) {
	return []backend.Item{{ID: "a", Score: 1}}, nil
}
func (s switchable) Healthy() bool { return s.healthy.Load() }

func TestReadyzRetryAfter(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	healthy := new(atomic.Bool)
	load := func(context.Context, *backendtest.Spec, backend.LoadOptions) (backend.Scorer, error) {
		return switchable{healthy}, nil
	}
	ctx := context.Background()
	reg, err := registry.New(ctx, db, backend.NewDrivers(backendtest.Driver{Name: "embedded", Loader: load}), nil, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutVersion(ctx, "m", "1", []byte(`{"backend": {"type": "embedded", "path": "x"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["m@1"]}`)); err != nil {
		t.Fatal(err)
	}
	table := &counters.Table{}
	signer, _ := predtoken.NewSigner(bytes.Repeat([]byte{7}, 32))
	rt := router.New(reg, table, signer, nil, router.Options{})
	fb := feedback.NewService(signer, db, table, func(string, string) (float64, bool) { return 0, true }, nil, feedback.Options{})
	h := New(Config{}, reg, rt, fb, table, nil).Handler()

	for _, tc := range []struct {
		name       string
		healthy    bool
		status     int
		retryAfter string
	}{
		{"unhealthy arm", false, http.StatusServiceUnavailable, "1"},
		{"healthy", true, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			healthy.Store(tc.healthy)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			var body struct {
				Unavailable []string `json:"unavailable_arms"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if !tc.healthy && (len(body.Unavailable) != 1 || body.Unavailable[0] != "home/m@1") {
				t.Fatalf("unavailable_arms %v, want [home/m@1]", body.Unavailable)
			}
		})
	}
}
