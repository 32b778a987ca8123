package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Endpoints and versions carry their revision in the body and as a strong
// ETag; a change with a stale If-Match is a 412 and changes nothing, a
// malformed one a 400.
func TestRevisionETagAndIfMatch(t *testing.T) {
	h := newTestServer(t)
	mf3 := `{"backend": {"type": "embedded", "path": "` + filepath.Join("..", "examples", "demo", "models", "mf", "1") + `"}}`
	steps := []struct {
		name, method, path, ifMatch, body string
		status                            int
		code                              string // error code
		etag                              string // ETag header of a success ("" for none)
	}{
		{"read", "GET", "/v1/endpoints/home", "", "", 200, "", `"1"`},
		{"stale pause", "PATCH", "/v1/endpoints/home/arms/mf@2", `"0"`, `{"state": "paused"}`, 412, "precondition_failed", ""},
		{"unquoted", "PATCH", "/v1/endpoints/home/arms/mf@2", `1`, `{"state": "paused"}`, 400, "invalid_if_match", ""},
		{"not a revision", "PATCH", "/v1/endpoints/home/arms/mf@2", `"abc"`, `{"state": "paused"}`, 400, "invalid_if_match", ""},
		{"too many tags", "PATCH", "/v1/endpoints/home/arms/mf@2", strings.Repeat(`"1", `, 17), `{"state": "paused"}`, 400, "invalid_if_match", ""},
		{"weak tag", "PATCH", "/v1/endpoints/home/arms/mf@2", `W/"1"`, `{"state": "paused"}`, 412, "precondition_failed", ""},
		{"unchanged", "GET", "/v1/endpoints/home", "", "", 200, "", `"1"`},
		{"pause", "PATCH", "/v1/endpoints/home/arms/mf@2", `"1"`, `{"state": "paused"}`, 200, "", `"2"`},
		{"register with *", "PUT", "/v1/models/mf/versions/3", `*`, mf3, 412, "precondition_failed", ""},
		{"register", "PUT", "/v1/models/mf/versions/3", "", mf3, 201, "", `"1"`},
		{"replace", "PUT", "/v1/models/mf/versions/3", `"1"`, mf3, 200, "", `"2"`},
		{"read version", "GET", "/v1/models/mf/versions/3", "", "", 200, "", `"2"`},
		{"stale add", "POST", "/v1/endpoints/home/arms", `"1"`, `{"arm": "mf@3"}`, 412, "precondition_failed", ""},
		{"add, one of a list", "POST", "/v1/endpoints/home/arms", `"5", "2"`, `{"arm": "mf@3"}`, 201, "", `"3"`},
		{"stale replace", "PUT", "/v1/endpoints/home", `"2"`, `{"arms": ["mf@1", "mf@2"]}`, 412, "precondition_failed", ""},
		{"replace, any", "PUT", "/v1/endpoints/home", `*`, `{"arms": ["mf@1", "mf@2"]}`, 200, "", `"4"`},
		{"stale delete", "DELETE", "/v1/endpoints/home", `"3"`, "", 412, "precondition_failed", ""},
		{"delete", "DELETE", "/v1/endpoints/home", `"4"`, "", 204, "", ""},
		{"create with *", "PUT", "/v1/endpoints/home", `*`, `{"arms": ["mf@1"]}`, 412, "precondition_failed", ""},
		{"stale version delete", "DELETE", "/v1/models/mf/versions/3", `"1"`, "", 412, "precondition_failed", ""},
		{"version delete", "DELETE", "/v1/models/mf/versions/3", `"2"`, "", 204, "", ""},
	}
	for _, s := range steps {
		req := httptest.NewRequest(s.method, s.path, strings.NewReader(s.body))
		if s.ifMatch != "" {
			req.Header.Set("If-Match", s.ifMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != s.status {
			t.Fatalf("%s: status %d, want %d: %s", s.name, rec.Code, s.status, rec.Body)
		}
		if rec.Code == http.StatusNoContent {
			continue
		}
		checkAnswer(t, rec)
		if s.code != "" {
			var e ErrorBody
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if e.Error.Code != s.code {
				t.Fatalf("%s: error %q, want %q: %s", s.name, e.Error.Code, s.code, rec.Body)
			}
			continue
		}
		etag := rec.Header().Get("ETag")
		var out struct {
			Revision uint64 `json:"revision"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		if etag != s.etag || etag != strconv.Quote(strconv.FormatUint(out.Revision, 10)) {
			t.Fatalf("%s: ETag %s, body revision %d; want both %s", s.name, etag, out.Revision, s.etag)
		}
	}
}

// After a refused change the endpoint is as it was.
func TestStaleIfMatchChangesNothing(t *testing.T) {
	h := newTestServer(t)
	get := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/endpoints/home", nil))
		return rec.Body.String()
	}
	before := get()
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "/v1/endpoints/home/arms/mf@1", `{"state": "paused"}`},
		{"PUT", "/v1/endpoints/home", `{"arms": ["mf@1"], "policy": {"min_share": 0.2}}`},
		{"DELETE", "/v1/endpoints/home", ""},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		req.Header.Set("If-Match", `"9"`)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusPreconditionFailed {
			t.Fatalf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
		if after := get(); after != before {
			t.Fatalf("%s with a stale If-Match changed the endpoint:\n%s\n%s", c.method, before, after)
		}
	}
}
