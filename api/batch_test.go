package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/router"
)

// A batch answers each entry alone: a response or that entry's error, in
// order; only a malformed envelope, a wrong count or an unknown endpoint
// is the whole call's error.
func TestRecommendBatchHTTP(t *testing.T) {
	h := newTestServer(t)
	entries := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`{"user_id": "u%d", "k": 2}`, i)
		}
		return `{"requests": [` + strings.Join(parts, ",") + `]}`
	}
	tests := []struct {
		name     string
		endpoint string
		body     string
		status   int
		code     string         // the whole call's error
		entries  []string       // per entry: "" served, else its error code
		fields   map[int]string // per entry: the field its error names
	}{
		{"every entry served", "home", entries(5), 200, "", []string{"", "", "", "", ""}, nil},
		{"entries at fault alone", "home", `{"requests": [{"user_id": "a"}, {"user_id": "b", "k": 0}, {"k": 3}, {"user_id": "c", "context": {"surface": "music"}}]}`,
			200, "", []string{"", "invalid_k", "missing_field", ""}, map[int]string{1: "k", 2: "user_id"}},
		{"every entry at fault, the endpoint known", "home", `{"requests": [{"user_id": "b", "k": 0}]}`, 200, "", []string{"invalid_k"}, nil},
		{"every entry at fault, the endpoint unknown", "nope", `{"requests": [{"user_id": "b", "k": 0}]}`, 404, "endpoint_not_found", nil, nil},
		{"an unknown endpoint", "nope", entries(2), 404, "endpoint_not_found", nil, nil},
		{"no requests", "home", `{"requests": []}`, 400, "invalid_requests", nil, nil},
		{"no requests field", "home", `{}`, 400, "invalid_requests", nil, nil},
		{"too many", "home", entries(router.MaxBatch + 1), 400, "invalid_requests", nil, nil},
		{"an unknown field in an entry", "home", `{"requests": [{"user_id": "a", "usr": 1}]}`, 400, "unknown_field", nil, nil},
		{"not an envelope", "home", `[{"user_id": "a"}]`, 400, "invalid_json", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/endpoints/"+tc.endpoint+"/recommend/batch", strings.NewReader(tc.body)))
			checkAnswer(t, rec)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			if tc.code != "" {
				var e ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != tc.code {
					t.Fatalf("error %+v, want %s", e, tc.code)
				}
				return
			}
			var out struct {
				Responses []map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Responses) != len(tc.entries) {
				t.Fatalf("%d responses, %v; want %d: %s", len(out.Responses), err, len(tc.entries), rec.Body.String())
			}
			seen := map[string]bool{}
			for i, want := range tc.entries {
				got := out.Responses[i]
				if want != "" {
					var d ErrorDetail
					if err := json.Unmarshal(got["error"], &d); err != nil || d.Code != want || len(got) != 1 {
						t.Errorf("entry %d: %s; want only an error %s", i, rec.Body.String(), want)
					}
					if f := tc.fields[i]; f != "" && d.Field != f {
						t.Errorf("entry %d names field %q, want %q", i, d.Field, f)
					}
					continue
				}
				var resp router.Response
				b, _ := json.Marshal(got)
				if err := json.Unmarshal(b, &resp); err != nil || got["error"] != nil || resp.PredictionID == "" || seen[resp.PredictionID] || resp.Endpoint != "home" {
					t.Errorf("entry %d: %s; want a response of its own", i, b)
				}
				seen[resp.PredictionID] = true
			}
		})
	}
}

// A batch entry's prediction takes feedback like any other.
func TestRecommendBatchFeedback(t *testing.T) {
	h := newTestServer(t)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/endpoints/home/recommend/batch",
		strings.NewReader(`{"requests": [{"user_id": "a", "k": 1}, {"user_id": "b", "k": 1}]}`)))
	var out struct {
		Responses []router.Response `json:"responses"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || len(out.Responses) != 2 {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body.String())
	}
	var evs []string
	for _, r := range out.Responses {
		evs = append(evs, fmt.Sprintf(`{"prediction_id": %q, "type": "click", "item_id": %q}`, r.PredictionID, r.Items[0].ID))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/feedback", bytes.NewReader([]byte(`{"events": [`+strings.Join(evs, ",")+`]}`))))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"accepted":2`) {
		t.Fatalf("feedback on a batch's predictions: %d %s", rec.Code, rec.Body.String())
	}
}

// BenchmarkRecommendBatch compares 64 users served by one batch call with
// the same 64 users served by 64 recommend calls, through the HTTP handler
// on the demo's embedded models (make bench runs it; see
// docs/performance.md, "Batch recommend").
func BenchmarkRecommendBatch(b *testing.B) {
	h := newTestServer(b)
	const users = 64
	single := make([][]byte, users)
	parts := make([]string, users)
	for i := range single {
		parts[i] = fmt.Sprintf(`{"user_id": "u%d", "context": {"surface": "home"}, "k": 10}`, i)
		single[i] = []byte(parts[i])
	}
	batch := []byte(`{"requests": [` + strings.Join(parts, ",") + `]}`)
	serve := func(b *testing.B, path string, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
		}
	}
	b.Run("64 single calls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, body := range single {
				serve(b, "/v1/endpoints/home/recommend", body)
			}
		}
	})
	b.Run("one batch of 64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serve(b, "/v1/endpoints/home/recommend/batch", batch)
		}
	})
}
