package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/store"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

func newTestServer(t testing.TB) http.Handler {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	reg, err := registry.New(ctx, db, backend.NewDrivers(embedded.Driver{}), nil, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		body := `{"backend": {"type": "embedded", "path": "` + filepath.Join("..", "examples", "demo", "models", "mf", v) + `"}}`
		if _, _, err := reg.PutVersion(ctx, "mf", v, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["mf@1", "mf@2"], "policy": {"segment_by": ["surface"]}}`)); err != nil {
		t.Fatal(err)
	}
	table := &counters.Table{}
	signer, _ := predtoken.NewSigner(bytes.Repeat([]byte{7}, 32))
	rt := router.New(reg, table, signer, nil, router.Options{})
	lookup := func(endpoint, arm string) (float64, bool) {
		ep, ok := reg.Snapshot().Endpoints[endpoint]
		if !ok {
			return 0, false
		}
		_, ok = ep.ArmStates[arm]
		return ep.Policy.Reward.ValueCap(), ok
	}
	fb := feedback.NewService(signer, db, table, lookup, nil, feedback.Options{})
	return New(Config{MaxBodyBytes: 64 << 10, MaxConcurrent: 8}, reg, rt, fb, table, nil).Handler()
}

// checkAnswer asserts that a response is never a 500 and is JSON in either
// the success shape or the documented error shape.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %q", rec.Code, rec.Body.String())
	}
	if rec.Code >= 400 {
		var e ErrorBody
		if err := json.Unmarshal(out["error"], &e.Error); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("status %d: error body not in the documented shape: %s", rec.Code, rec.Body.String())
		}
		if namesField(e.Error.Message, e.Error.Field) {
			t.Fatalf("status %d: the message names its field again: %s", rec.Code, rec.Body.String())
		}
	}
}

func FuzzDecodeRecommend(f *testing.F) {
	h := newTestServer(f)
	for _, s := range []string{
		`{"user_id": "u42", "context": {"surface": "music"}, "features": {"recent_items": ["i3","i9"], "age": 31}, "candidates": ["i1","i2","i3"], "exclude": ["i9"], "k": 10}`,
		`{"user_id": "u1", "k": 0}`, `{"user_id": ""}`, `[]`, `null`, `{"user_id": "\u0000", "context": {"surface": "\u0000"}}`,
		`{"user_id": "u1", "k": 1e400}`, `{"user_id": "u1", "candidates": []}`, `{"user_id":"u","features":{"recent_items":[[1]]}}`,
		`{"User_ID": "u1"}`, `{"user_id": "a", "user_id": "b"}`, `{"user_id": "u", "context": {"surface": "a", "surface": "b"}}`,
		`{"user_id": "u", "features": {"x": [{"a": 1, "a": 2}]}}`, `{"user_id": "u", "context": {"surface": 3}}`,
		`{"events": [{"prediction_id": "p", "type": "click", "Item_ID": "i"}]}`,
		`{"requests": [{"user_id": "u1", "k": 2}, {"user_id": ""}, {"k": 0}]}`, `{"requests": null}`, `{"requests": [null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/endpoints/home/recommend", bytes.NewReader(body)))
		checkAnswer(t, rec)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/feedback", bytes.NewReader(body)))
		checkAnswer(t, rec)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/endpoints/home/recommend/batch", bytes.NewReader(body)))
		checkAnswer(t, rec)
	})
}

// FuzzDecodeFeedback posts feedback bodies whose "TOKEN"s are valid tokens
// of a value endpoint's prediction: whatever the body, the answer is a
// documented 4xx, or a 200 that accounts for every event once (accepted,
// duplicate or rejected).
func FuzzDecodeFeedback(f *testing.F) {
	h := newTestServer(f)
	put := httptest.NewRecorder()
	h.ServeHTTP(put, httptest.NewRequest(http.MethodPut, "/v1/endpoints/watch",
		strings.NewReader(`{"arms": ["mf@1"], "policy": {"reward": {"type": "value", "cap": 100}}}`)))
	if put.Code != http.StatusCreated {
		f.Fatalf("create the value endpoint: %d %s", put.Code, put.Body)
	}
	signer, _ := predtoken.NewSigner(bytes.Repeat([]byte{7}, 32))
	for _, s := range []string{
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "item_id": "i1", "value": 30}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "item_id": "i1", "value": 30}, {"prediction_id": "TOKEN", "type": "reward", "item_id": "i2", "value": 250}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "value": 1e400}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "value": -0.0}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "value": -1e-300}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "value": "5"}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "value": null}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "value": 1, "value": 2}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "click", "item_id": "i1", "value": 0}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "impression"}, {"prediction_id": "x", "type": "reward", "value": 1}]}`,
		`{"events": [{"prediction_id": "TOKEN", "type": "reward", "Value": 1}]}`,
		`{"events": []}`, `{"events": null}`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok := signer.Sign(&predtoken.Token{Endpoint: "watch", Arm: "mf@1", Segment: "all", Time: time.Now(), Window: time.Hour, Items: 3, ID: predtoken.NewID()})
		body = bytes.ReplaceAll(body, []byte("TOKEN"), []byte(tok))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/feedback", bytes.NewReader(body)))
		checkAnswer(t, rec)
		if rec.Code != http.StatusOK {
			return
		}
		var in struct{ Events []json.RawMessage }
		var out struct {
			Accepted, Duplicates *int
			Rejected             []struct{ Index int }
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("200 for a body Go cannot read: %s", body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Accepted == nil || out.Duplicates == nil || out.Rejected == nil {
			t.Fatalf("200 without its three fields: %s", rec.Body)
		}
		if *out.Accepted+*out.Duplicates+len(out.Rejected) != len(in.Events) {
			t.Fatalf("%d events answered %s", len(in.Events), rec.Body)
		}
	})
}

func TestMethodNotAllowedAndNotFound(t *testing.T) {
	h := newTestServer(t)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/endpoints/home/recommend", 405, "method_not_allowed"},
		{"GET", "/v2/anything", 404, "not_found"},
		{"GET", "/v1/models/mf/versions/9", 404, "version_not_found"},
		{"GET", "/v1/models/nope/versions/1", 404, "model_not_found"},
		{"GET", "/v1/endpoints/nope/report", 404, "endpoint_not_found"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			checkAnswer(t, rec)
			var e ErrorBody
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if rec.Code != tc.status || e.Error.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", rec.Code, e.Error.Code, tc.status, tc.code)
			}
		})
	}
}

func TestReportCSV(t *testing.T) {
	h := newTestServer(t)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/endpoints/home/recommend", bytes.NewReader([]byte(`{"user_id": "u1", "context": {"surface": "music"}}`))))
	if rec.Code != 200 {
		t.Fatalf("recommend: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/endpoints/home/report?segment=surface%3Dmusic&format=csv", nil))
	lines := bytes.Split(bytes.TrimSpace(rec.Body.Bytes()), []byte("\n"))
	if rec.Code != 200 || len(lines) != 3 || !bytes.HasPrefix(lines[0], []byte("endpoint,segment,arm,state,trials,successes,rate,ci95_low,ci95_high")) {
		t.Fatalf("csv: %d\n%s", rec.Code, rec.Body)
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte("home,surface=music,mf@")) {
		t.Fatalf("csv rows lack the segment:\n%s", rec.Body)
	}
	// The doubly robust estimate follows off_policy_served; mean_value
	// (empty on a click endpoint) closes the row.
	if !bytes.HasSuffix(lines[0], []byte(",off_policy_served,off_policy_dr,off_policy_dr_ci95_low,off_policy_dr_ci95_high,mean_value")) ||
		bytes.Count(lines[1], []byte(",")) != bytes.Count(lines[0], []byte(",")) {
		t.Fatalf("csv columns:\n%s", rec.Body)
	}
}
