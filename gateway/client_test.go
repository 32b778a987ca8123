package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/registry"
)

// newTestClient is a client of the app at url with key ("" for none).
func newTestClient(t *testing.T, url, key string) *client.Client {
	t.Helper()
	c, err := client.New(url, client.Options{APIKey: key, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantAPIError checks that err is a *client.Error with the status and code.
func wantAPIError(t *testing.T, err error, status int, code string) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a *client.Error %d %s", err, err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error %d %s (%q), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
	return e
}

func TestNewClientBaseURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"https://gateway.example:8443/", true},
		{"http://proxy.example/modelgate", true},
		{"127.0.0.1:8080", false},
		{"ftp://x", false},
		{"http://", false},
		{"http://h?x=1", false},
	} {
		_, err := client.New(tc.url, client.Options{})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q): err %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}

// TestClientOperations runs every call of the client against the real
// gateway over the bundled demo, in an order in which each succeeds.
func TestClientOperations(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	c := newTestClient(t, a.url, "")
	ctx := context.Background()
	mf2, err := filepath.Abs(filepath.Join(demoDir, "models", "mf", "2"))
	if err != nil {
		t.Fatal(err)
	}
	var predictionID string
	steps := []struct {
		name string
		run  func(t *testing.T) error
	}{
		{"models", func(t *testing.T) error {
			ms, err := c.Models(ctx)
			if err == nil && (len(ms) != 1 || ms[0].Name != "mf" || len(ms[0].Versions) != 2) {
				t.Errorf("models %+v", ms)
			}
			return err
		}},
		{"version", func(t *testing.T) error {
			v, err := c.Version(ctx, "mf", "2")
			if err == nil && (v.Arm != "mf@2" || v.Backend.Type != "embedded" || v.Revision == 0 || v.Metadata["note"] == nil) {
				t.Errorf("version %+v", v)
			}
			return err
		}},
		{"put version, typed", func(t *testing.T) error {
			body := registry.VersionBody{Backend: &registry.BackendSpec{Type: "embedded", Config: &embedded.Spec{Path: mf2, TimeoutMS: 50}},
				Metadata: map[string]any{"recall": 0.21}}
			v, created, err := c.PutVersion(ctx, "mf", "3", body)
			if err == nil && (!created || v.Arm != "mf@3" || backendTimeoutMS(t, v.Backend) != 50) {
				t.Errorf("created %v, version %+v", created, v)
			}
			if err != nil {
				return err
			}
			_, created, err = c.PutVersion(ctx, "mf", "3", body)
			if err == nil && created {
				t.Error("replacing an unused version answered created")
			}
			return err
		}},
		{"put version, JSON", func(t *testing.T) error {
			body, _ := json.Marshal(map[string]any{"backend": map[string]any{"type": "embedded", "path": mf2}})
			_, created, err := c.PutVersionJSON(ctx, "mf", "4", body)
			if err == nil && !created {
				t.Error("a new version answered replaced")
			}
			return err
		}},
		{"endpoints", func(t *testing.T) error {
			eps, err := c.Endpoints(ctx)
			if err == nil && (len(eps) != 1 || eps[0].Name != "home") {
				t.Errorf("endpoints %+v", eps)
			}
			return err
		}},
		{"endpoint", func(t *testing.T) error {
			ep, err := c.Endpoint(ctx, "home")
			if err == nil && (strings.Join(ep.Arms, ",") != "mf@1,mf@2" || ep.Fallback != "mf@1" || ep.Policy.Type != "thompson") {
				t.Errorf("endpoint %+v", ep)
			}
			return err
		}},
		{"add arm", func(t *testing.T) error {
			ep, err := c.AddArm(ctx, "home", "mf@3")
			if err == nil && ep.ArmStates["mf@3"] != registry.Active {
				t.Errorf("arm states %v", ep.ArmStates)
			}
			return err
		}},
		{"pause arm, with the current revision", func(t *testing.T) error {
			cur, err := c.Endpoint(ctx, "home")
			if err != nil {
				return err
			}
			ep, err := c.PauseArm(ctx, "home", "mf@3", client.IfMatch(cur.Revision))
			if err == nil && (ep.ArmStates["mf@3"] != registry.Paused || ep.Revision <= cur.Revision) {
				t.Errorf("arm states %v, revision %d after %d", ep.ArmStates, ep.Revision, cur.Revision)
			}
			return err
		}},
		{"resume arm", func(t *testing.T) error {
			ep, err := c.ResumeArm(ctx, "home", "mf@3")
			if err == nil && ep.ArmStates["mf@3"] != registry.Active {
				t.Errorf("arm states %v", ep.ArmStates)
			}
			return err
		}},
		{"put endpoint: create, then replace if it exists", func(t *testing.T) error {
			ep, created, err := c.PutEndpointJSON(ctx, "shop", json.RawMessage(`{"arms": ["mf@1", "mf@4"], "policy": {"segment_by": ["surface"]}}`))
			if err == nil && (!created || ep.Name != "shop" || strings.Join(ep.Policy.SegmentBy, ",") != "surface") {
				t.Errorf("created %v, endpoint %+v", created, ep)
			}
			if err != nil {
				return err
			}
			ep, created, err = c.PutEndpointJSON(ctx, "shop", json.RawMessage(`{"arms": ["mf@1"]}`), client.IfExists())
			if err == nil && (created || len(ep.Arms) != 1) {
				t.Errorf("created %v, endpoint %+v", created, ep)
			}
			return err
		}},
		{"delete endpoint", func(t *testing.T) error { return c.DeleteEndpoint(ctx, "shop") }},
		{"delete version", func(t *testing.T) error { return c.DeleteVersion(ctx, "mf", "4") }},
		{"recommend batch", func(t *testing.T) error {
			out, err := c.RecommendBatch(ctx, "home", []api.RecommendRequest{{UserID: new("u1"), K: new(2)}, {K: new(2)}})
			if err == nil && (len(out) != 2 || out[0].Response == nil || len(out[0].Items) != 2 || out[0].Error != nil ||
				out[1].Response != nil || out[1].Error == nil || out[1].Error.Code != "missing_field") {
				t.Errorf("recommend batch %+v", out)
			}
			return err
		}},
		{"recommend", func(t *testing.T) error {
			resp, err := c.Recommend(ctx, "home", api.RecommendRequest{UserID: new("u1"), K: new(3), Exclude: []string{"i1"}})
			if err == nil && (resp.PredictionID == "" || resp.Endpoint != "home" || len(resp.Items) != 3 || resp.Segment != "all") {
				t.Errorf("recommend %+v", resp)
			}
			if err == nil {
				predictionID = resp.PredictionID
				for _, it := range resp.Items {
					if it.ID == "i1" {
						t.Errorf("excluded item served: %+v", resp.Items)
					}
				}
			}
			return err
		}},
		{"feedback, then the same again", func(t *testing.T) error {
			events := []feedback.Event{{PredictionID: predictionID, Type: "click", ItemID: "i2"}, {PredictionID: "nope", Type: "click", ItemID: "i2"}}
			res, err := c.Feedback(ctx, events)
			if err != nil {
				return err
			}
			if res.Accepted != 1 || len(res.Rejected) != 1 || res.Rejected[0].Index != 1 || res.Rejected[0].Code != "invalid_prediction_id" {
				t.Errorf("feedback %+v", res)
			}
			res, err = c.Feedback(ctx, events[:1])
			if err == nil && (res.Accepted != 0 || res.Duplicates != 1) {
				t.Errorf("feedback again %+v", res)
			}
			return err
		}},
		{"report", func(t *testing.T) error {
			var raw []byte
			rep, err := c.Report(ctx, "home", client.ReportQuery{}, client.RawBody(&raw))
			if err != nil {
				return err
			}
			if rep.Endpoint != "home" || rep.Segment != "all" || len(rep.Arms) != 3 || rep.Decision.Status == "" {
				t.Errorf("report %+v", rep)
			}
			if !bytes.Contains(raw, []byte(`"endpoint":"home"`)) {
				t.Errorf("raw body %s", raw)
			}
			return nil
		}},
		{"report CSV", func(t *testing.T) error {
			csv, err := c.ReportCSV(ctx, "home", client.ReportQuery{Segment: "all"})
			if err == nil && (!bytes.HasPrefix(csv, []byte("endpoint,segment,arm,")) || bytes.Count(csv, []byte("\nhome,all,")) != 3) {
				t.Errorf("CSV %s", csv)
			}
			return err
		}},
		{"history", func(t *testing.T) error {
			h, err := c.History(ctx, "home", client.ReportQuery{From: time.Now().Add(-time.Hour)})
			if err == nil && (h.Endpoint != "home" || h.Interval != "10s") {
				t.Errorf("history %+v", h)
			}
			return err
		}},
		{"history CSV", func(t *testing.T) error {
			csv, err := c.HistoryCSV(ctx, "home", client.ReportQuery{})
			if err == nil && !bytes.HasPrefix(csv, []byte("t,endpoint,segment,arm,")) {
				t.Errorf("CSV %s", csv)
			}
			return err
		}},
		{"audit", func(t *testing.T) error {
			entries, err := c.Audit(ctx, 5)
			if err == nil && (len(entries) == 0 || len(entries) > 5) {
				t.Errorf("audit %+v", entries)
			}
			return err
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			if err := s.run(t); err != nil {
				t.Fatal(err)
			}
		}) {
			return // later steps build on this one
		}
	}
}

// TestClientErrors checks that the API's error answers reach the caller as
// *client.Error with their status and code.
func TestClientErrors(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	c := newTestClient(t, a.url, "")
	ctx := context.Background()
	home, err := c.Endpoint(ctx, "home")
	if err != nil {
		t.Fatal(err)
	}
	stale := client.IfMatch(home.Revision + 7)
	mf2, err := filepath.Abs(filepath.Join(demoDir, "models", "mf", "2"))
	if err != nil {
		t.Fatal(err)
	}
	mf3, _, err := c.PutVersion(ctx, "mf", "3", registry.VersionBody{Backend: &registry.BackendSpec{Type: "embedded", Config: &embedded.Spec{Path: mf2}}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		call   func() error
		status int
		code   string
		field  string
	}{
		{"unknown model", func() error { _, err := c.Version(ctx, "nope", "1"); return err }, 404, "model_not_found", ""},
		{"unknown version", func() error { _, err := c.Version(ctx, "mf", "9"); return err }, 404, "version_not_found", ""},
		{"unknown endpoint", func() error { _, err := c.Endpoint(ctx, "nope"); return err }, 404, "endpoint_not_found", ""},
		{"recommend on an unknown endpoint", func() error {
			_, err := c.Recommend(ctx, "nope", api.RecommendRequest{UserID: new("u")})
			return err
		}, 404, "endpoint_not_found", ""},
		{"unknown segment", func() error {
			_, err := c.Report(ctx, "home", client.ReportQuery{Segment: "surface=nope"})
			return err
		}, 404, "segment_not_found", ""},
		{"unknown key to revoke", func() error { return c.RevokeKey(ctx, "nope") }, 404, "key_not_found", ""},
		{"arm already there", func() error { _, err := c.AddArm(ctx, "home", "mf@1"); return err }, 409, "arm_exists", ""},
		{"delete a version in use", func() error { return c.DeleteVersion(ctx, "mf", "1") }, 409, "version_in_use", ""},
		{"pause with a stale revision", func() error { _, err := c.PauseArm(ctx, "home", "mf@2", stale); return err }, 412, "precondition_failed", ""},
		{"replace with a stale revision", func() error {
			_, _, err := c.PutEndpointJSON(ctx, "home", json.RawMessage(`{"arms": ["mf@1"]}`), stale)
			return err
		}, 412, "precondition_failed", ""},
		{"add an arm with a stale revision", func() error { _, err := c.AddArm(ctx, "home", "mf@2", stale); return err }, 412, "precondition_failed", ""},
		{"replace an endpoint that does not exist", func() error {
			_, _, err := c.PutEndpointJSON(ctx, "new", json.RawMessage(`{"arms": ["mf@1"]}`), client.IfExists())
			return err
		}, 412, "precondition_failed", ""},
		{"delete a version with a stale revision", func() error { return c.DeleteVersion(ctx, "mf", "3", client.IfMatch(mf3.Revision+1)) }, 412, "precondition_failed", ""},
		{"k of 0", func() error {
			_, err := c.Recommend(ctx, "home", api.RecommendRequest{UserID: new("u"), K: new(0)})
			return err
		}, 400, "invalid_k", "k"},
		{"unknown field in an endpoint body", func() error {
			_, _, err := c.PutEndpointJSON(ctx, "home", json.RawMessage(`{"Arms": ["mf@1"]}`))
			return err
		}, 400, "unknown_field", "Arms"},
		{"bad arm state", func() error { _, err := c.SetArmState(ctx, "home", "mf@1", "sleeping"); return err }, 400, "invalid_state", "state"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := wantAPIError(t, tc.call(), tc.status, tc.code)
			if e.Field != tc.field {
				t.Errorf("field %q, want %q", e.Field, tc.field)
			}
			if client.StatusOf(e) != tc.status {
				t.Errorf("StatusOf %d", client.StatusOf(e))
			}
		})
	}
	// Nothing the failed calls tried changed the endpoint.
	after, err := c.Endpoint(ctx, "home")
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != home.Revision {
		t.Errorf("revision %d after failed changes, was %d", after.Revision, home.Revision)
	}
}

// TestClientAuth checks keys: the key calls, 401 without a valid key, 403
// without the scope, and 429 with its Retry-After.
func TestClientAuth(t *testing.T) {
	a := startAuthApp(t, "", true)
	ctx := context.Background()
	admin := newTestClient(t, a.url, a.admin)
	made, err := admin.CreateKey(ctx, api.KeyRequest{Name: "app1", Scopes: []string{auth.ScopeClient}})
	if err != nil {
		t.Fatal(err)
	}
	if made.Name != "app1" || !strings.HasPrefix(made.Key, "mg_") {
		t.Fatalf("created %+v", made)
	}
	limited, err := admin.CreateKey(ctx, api.KeyRequest{Name: "slow", Scopes: []string{auth.ScopeML}, Rate: 0.01, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	app := newTestClient(t, a.url, made.Key)
	slow := newTestClient(t, a.url, limited.Key)
	cases := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"list keys as admin", func() error {
			keys, err := admin.Keys(ctx)
			if err == nil && len(keys) != 3 {
				t.Errorf("keys %+v", keys)
			}
			for _, k := range keys {
				if k.Key != "" {
					t.Errorf("listed key %s with its secret", k.Name)
				}
			}
			return err
		}, 0, ""},
		{"recommend with a client key", func() error {
			_, err := app.Recommend(ctx, "home", api.RecommendRequest{UserID: new("u")})
			return err
		}, 0, ""},
		{"no key", func() error { _, err := newTestClient(t, a.url, "").Models(ctx); return err }, http.StatusUnauthorized, "unauthenticated"},
		{"unknown key", func() error { _, err := newTestClient(t, a.url, "mg_nope").Models(ctx); return err }, http.StatusUnauthorized, "unauthenticated"},
		{"client key on an ml call", func() error { _, err := app.Models(ctx); return err }, http.StatusForbidden, "forbidden"},
		{"client key on keys", func() error { _, err := app.Keys(ctx); return err }, http.StatusForbidden, "forbidden"},
		{"a key that exists", func() error {
			_, err := admin.CreateKey(ctx, api.KeyRequest{Name: "app1", Scopes: []string{auth.ScopeClient}})
			return err
		}, http.StatusConflict, "key_exists"},
		{"rate limited, first call", func() error { _, err := slow.Models(ctx); return err }, 0, ""},
		{"rate limited", func() error {
			_, err := slow.Models(ctx)
			var e *client.Error
			if errors.As(err, &e) && e.RetryAfter < time.Second {
				t.Errorf("Retry-After %v", e.RetryAfter)
			}
			return err
		}, http.StatusTooManyRequests, "rate_limited"},
		{"revoke", func() error { return admin.RevokeKey(ctx, "app1") }, 0, ""},
		{"revoke again", func() error { return admin.RevokeKey(ctx, "app1") }, http.StatusNotFound, "key_not_found"},
		{"revoked key", func() error {
			_, err := app.Recommend(ctx, "home", api.RecommendRequest{UserID: new("u")})
			return err
		}, http.StatusUnauthorized, "unauthenticated"},
		{"audit names the changes", func() error {
			entries, err := admin.Audit(ctx, 0)
			if err == nil {
				var seen []string
				for _, e := range entries {
					seen = append(seen, e.Action+" "+e.Target)
				}
				if s := strings.Join(seen, ", "); !strings.Contains(s, "create_key app1") || !strings.Contains(s, "revoke_key app1") {
					t.Errorf("audit %s", s)
				}
			}
			return err
		}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantAPIError(t, err, tc.status, tc.code)
		})
	}
}

// backendTimeoutMS is the timeout_ms of a backend as the API returned it
// (a client holds the backend object as read, without its driver).
func backendTimeoutMS(t *testing.T, b registry.BackendSpec) int {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var spec embedded.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.TimeoutMS
}
