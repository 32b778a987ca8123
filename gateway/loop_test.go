package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/predtoken"
)

func TestLoopOverHTTP(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	var rec recResp
	st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{
		"user_id": "u42", "context": map[string]string{"surface": "music"}, "k": 5, "exclude": []string{"i1"}}, &rec)
	if st != http.StatusOK {
		t.Fatalf("recommend: %d", st)
	}
	if rec.Endpoint != "home" || rec.Segment != "all" || rec.PredictionID == "" || rec.Fallback ||
		rec.Model != "mf" || (rec.Arm != "mf@1" && rec.Arm != "mf@2") || rec.Arm != rec.Model+"@"+rec.Version {
		t.Fatalf("recommend response: %+v", rec)
	}
	if len(rec.Items) != 5 {
		t.Fatalf("got %d items, want k=5", len(rec.Items))
	}
	for i, it := range rec.Items {
		if it.ID == "i1" {
			t.Fatal("an excluded item was returned")
		}
		if i > 0 && it.Score > rec.Items[i-1].Score {
			t.Fatal("items are not in descending score order")
		}
	}

	var fb fbResp
	click := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
	if st := call(t, "POST", a.url+"/v1/feedback", click, &fb); st != 200 || fb.Accepted != 1 || fb.Duplicates != 0 || len(fb.Rejected) != 0 {
		t.Fatalf("feedback: %d %+v", st, fb)
	}
	var rep reportResp
	if st := call(t, "GET", a.url+"/v1/endpoints/home/report", nil, &rep); st != 200 {
		t.Fatalf("report: %d", st)
	}
	if tr, su := rep.arm(rec.Arm); tr != 1 || su != 1 {
		t.Fatalf("report for %s: %d trials %g successes, want 1 and 1", rec.Arm, tr, su)
	}

	// The same click again is a duplicate; a click on another item of the
	// same prediction is accepted but adds no second success.
	call(t, "POST", a.url+"/v1/feedback", click, &fb)
	if fb.Accepted != 0 || fb.Duplicates != 1 {
		t.Fatalf("repeated click: %+v, want 1 duplicate", fb)
	}
	other := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[1].ID}}}
	call(t, "POST", a.url+"/v1/feedback", other, &fb)
	if fb.Accepted != 1 || fb.Duplicates != 0 {
		t.Fatalf("click on a second item: %+v, want accepted", fb)
	}
	call(t, "GET", a.url+"/v1/endpoints/home/report", nil, &rep)
	if tr, su := rep.arm(rec.Arm); tr != 1 || su != 1 {
		t.Fatalf("after a second click: %d trials %g successes, want 1 and 1", tr, su)
	}

	// The wire names are exact (Go's decoder would accept "ID" for "id").
	raw := map[string]any{}
	call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u42", "k": 1}, &raw)
	for _, k := range []string{"prediction_id", "endpoint", "arm", "model", "version", "segment", "items", "fallback"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("response lacks %q: %v", k, raw)
		}
	}
	if it := raw["items"].([]any)[0].(map[string]any); it["id"] == nil || it["score"] == nil || len(it) != 2 {
		t.Fatalf("item fields: %v, want exactly id and score", it)
	}
}

func TestImpressionTrials(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	body := `{"arms": ["mf@1"], "policy": {"trials_on": "impression"}}`
	if st := call(t, "PUT", a.url+"/v1/endpoints/imp", body, nil); st != http.StatusCreated {
		t.Fatalf("create endpoint: %d", st)
	}
	var rec recResp
	call(t, "POST", a.url+"/v1/endpoints/imp/recommend", map[string]any{"user_id": "u1"}, &rec)
	var rep reportResp
	call(t, "GET", a.url+"/v1/endpoints/imp/report", nil, &rep)
	if tr, _ := rep.arm("mf@1"); tr != 0 {
		t.Fatalf("trials_on impression: a served list counted %d trials before any impression", tr)
	}
	ev := func(typ, item string) map[string]any {
		return map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": typ, "item_id": item}}}
	}
	var fb fbResp
	call(t, "POST", a.url+"/v1/feedback", ev("impression", ""), &fb)
	call(t, "POST", a.url+"/v1/feedback", ev("click", rec.Items[0].ID), &fb)
	call(t, "GET", a.url+"/v1/endpoints/imp/report", nil, &rep)
	if tr, su := rep.arm("mf@1"); tr != 1 || su != 1 {
		t.Fatalf("after impression and click: %d trials %g successes, want 1 and 1", tr, su)
	}
}

// Feedback follows the rules a prediction was served under: switching the
// policy from impression to serve counting must not leave a success
// without its trial.
func TestFeedbackUsesServeTimePolicy(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/endpoints/sw", `{"arms": ["mf@1"], "policy": {"trials_on": "impression"}}`, nil); st != 201 {
		t.Fatalf("create: %d", st)
	}
	var rec recResp
	call(t, "POST", a.url+"/v1/endpoints/sw/recommend", map[string]any{"user_id": "u1"}, &rec)
	if st := call(t, "PUT", a.url+"/v1/endpoints/sw", `{"arms": ["mf@1"], "policy": {"trials_on": "serve"}}`, nil); st != 200 {
		t.Fatalf("replace: %d", st)
	}
	var fb fbResp
	call(t, "POST", a.url+"/v1/feedback", map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}, &fb)
	var rep reportResp
	call(t, "GET", a.url+"/v1/endpoints/sw/report", nil, &rep)
	if tr, su := rep.arm("mf@1"); tr != 1 || su != 1 || fb.Accepted != 1 {
		t.Fatalf("%d trials %g successes (accepted %d), want 1 and 1", tr, su, fb.Accepted)
	}
}

func TestBadInput(t *testing.T) {
	a := startApp(t, demoConfig(t, "limits: {max_body_bytes: 4096}\n"))
	rec := func() recResp {
		var r recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", `{"user_id": "u1"}`, &r); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		return r
	}
	cases := []struct {
		name, method, path string
		body               string
		status             int
		code, field        string
	}{
		{"malformed json", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1"`, 400, "invalid_json", ""},
		{"not an object", "POST", "/v1/endpoints/home/recommend", `[1, 2]`, 400, "invalid_json", ""},
		{"empty body", "POST", "/v1/endpoints/home/recommend", ``, 400, "invalid_json", ""},
		{"unknown endpoint", "POST", "/v1/endpoints/nope/recommend", `{"user_id": "u1"}`, 404, "endpoint_not_found", ""},
		{"k zero", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1", "k": 0}`, 400, "invalid_k", "k"},
		{"k too big", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1", "k": 1001}`, 400, "invalid_k", "k"},
		{"k not a number", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1", "k": "ten"}`, 400, "invalid_type", "k"},
		{"empty user_id", "POST", "/v1/endpoints/home/recommend", `{"user_id": ""}`, 400, "missing_field", "user_id"},
		{"missing user_id", "POST", "/v1/endpoints/home/recommend", `{}`, 400, "missing_field", "user_id"},
		{"user_id not a string", "POST", "/v1/endpoints/home/recommend", `{"user_id": 42}`, 400, "invalid_type", "user_id"},
		{"context not strings", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1", "context": {"surface": 3}}`, 400, "invalid_type", "context.surface"},
		{"context value too long", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1", "context": {"surface": "` + strings.Repeat("y", 300) + `"}}`, 400, "invalid_context", "context.surface"},
		{"unknown field", "POST", "/v1/endpoints/home/recommend", `{"user_id": "u1", "candidate": ["i1"]}`, 400, "unknown_field", "candidate"},
		{"oversized body", "POST", "/v1/endpoints/home/recommend", `{"user_id": "` + strings.Repeat("x", 5000) + `"}`, 413, "body_too_large", ""},
		{"no events", "POST", "/v1/feedback", `{"events": []}`, 400, "invalid_events", "events"},
		{"unknown path", "GET", "/v1/nothing", ``, 404, "not_found", ""},
		{"missing model files", "PUT", "/v1/models/mf/versions/9", `{"backend": {"type": "embedded", "path": "/nonexistent/mf/9"}}`, 400, "invalid_model", "backend.path"},
		{"unknown backend", "PUT", "/v1/models/mf/versions/9", `{"backend": {"type": "pytorch"}}`, 400, "unsupported_backend", "backend.type"},
		{"bad feature spec", "PUT", "/v1/models/mf/versions/9", `{"backend": {"type": "embedded", "path": "` + demoDir + `/models/mf/1"}, "features": {"inputs": {"x": {"from": "user_id", "dtype": "int128"}}}}`, 400, "invalid_feature_spec", "features.inputs.x.dtype"},
		{"embedded spec the model cannot read", "PUT", "/v1/models/mf/versions/9", `{"backend": {"type": "embedded", "path": "` + demoDir + `/models/mf/1"}, "features": {"inputs": {"user_id": {"from": "user_id", "transform": "hash_bucket", "buckets": 10, "dtype": "int64"}}}}`, 400, "invalid_feature_spec", "features.inputs.user_id"},
		{"onnx model missing", "PUT", "/v1/models/r/versions/1", `{"backend": {"type": "onnx", "path": "/nonexistent/r/1", "outputs": {"scores": "scores"}, "batching": {"max_batch_size": 4}}}`, 400, "invalid_model", "backend.path"},
		{"unknown backend type", "PUT", "/v1/models/r/versions/1", `{"backend": {"type": "torchscript", "path": "/m"}}`, 400, "unsupported_backend", "backend.type"},
		{"endpoint with unknown arm", "PUT", "/v1/endpoints/e2", `{"arms": ["mf@7"]}`, 400, "unknown_model_version", "arms[0]"},
		{"endpoint bad policy", "PUT", "/v1/endpoints/e2", `{"arms": ["mf@1"], "policy": {"type": "greedy"}}`, 400, "invalid_policy", "policy.type"},
		{"delete version in use", "DELETE", "/v1/models/mf/versions/1", ``, 409, "version_in_use", ""},
		{"delete unknown version", "DELETE", "/v1/models/mf/versions/77", ``, 404, "version_not_found", ""},
		{"pause unknown arm", "PATCH", "/v1/endpoints/home/arms/mf@9", `{"state": "paused"}`, 404, "arm_not_found", ""},
		{"bad arm state", "PATCH", "/v1/endpoints/home/arms/mf@1", `{"state": "off"}`, 400, "invalid_state", "state"},
		{"add existing arm", "POST", "/v1/endpoints/home/arms", `{"arm": "mf@1"}`, 409, "arm_exists", ""},
		{"report bad format", "GET", "/v1/endpoints/home/report?format=xml", ``, 400, "invalid_format", "format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e errResp
			st := call(t, tc.method, a.url+tc.path, tc.body, &e)
			if st != tc.status || e.Error.Code != tc.code || e.Error.Field != tc.field || e.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d code %q field %q", st, e.Error, tc.status, tc.code, tc.field)
			}
		})
	}

	t.Run("feedback rejections", func(t *testing.T) {
		good := rec()
		raw := []byte(good.PredictionID)
		raw[len(raw)/2] ^= 1
		key, _ := a.db.SigningKey(context.Background())
		signer, _ := predtoken.NewSigner(key)
		old := signer.Sign(&predtoken.Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now().Add(-25 * time.Hour), ID: predtoken.NewID()})
		gone := signer.Sign(&predtoken.Token{Endpoint: "gone", Arm: "mf@1", Segment: "all", Time: time.Now(), ID: predtoken.NewID()})
		body := map[string]any{"events": []map[string]string{
			{"prediction_id": good.PredictionID, "type": "click", "item_id": "i3"},
			{"prediction_id": string(raw), "type": "click", "item_id": "i3"},
			{"prediction_id": "not-a-token", "type": "click"},
			{"prediction_id": old, "type": "click", "item_id": "i3"},
			{"prediction_id": good.PredictionID, "type": "like", "item_id": "i3"},
			{"prediction_id": gone, "type": "click", "item_id": "i3"},
			{"prediction_id": good.PredictionID, "type": "click", "item_id": "i3"},
		}}
		var fb fbResp
		if st := call(t, "POST", a.url+"/v1/feedback", body, &fb); st != 200 {
			t.Fatalf("feedback: %d", st)
		}
		want := []string{"", "invalid_prediction_id", "invalid_prediction_id", "expired", "unknown_type", "unknown_endpoint_or_arm"}
		got := make([]string, 6)
		for _, r := range fb.Rejected {
			if r.Index < len(got) {
				got[r.Index] = r.Code
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || fb.Accepted != 1 || fb.Duplicates != 1 {
			t.Fatalf("got accepted %d duplicates %d codes %v, want 1, 1, %v", fb.Accepted, fb.Duplicates, got, want)
		}
	})
}

// Every change to versions and endpoints is in the audit log, newest first,
// with who made it (config at start-up) and the result.
func TestAuditLog(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	call(t, "PATCH", a.url+"/v1/endpoints/home/arms/mf@1", `{"state": "paused"}`, nil)
	call(t, "DELETE", a.url+"/v1/models/mf/versions/1", nil, nil) // refused: in use
	var out struct {
		Entries []struct {
			Key, Action, Target, Result string
		} `json:"entries"`
	}
	if st := call(t, "GET", a.url+"/v1/audit?limit=10", nil, &out); st != 200 {
		t.Fatalf("audit: %d", st)
	}
	got := []string{}
	for _, e := range out.Entries {
		got = append(got, e.Key+" "+e.Action+" "+e.Target)
	}
	want := []string{"anonymous delete_version mf@1", "anonymous pause_arm home/mf@1", "config create_endpoint home",
		"config register_version mf@2", "config register_version mf@1"}
	if fmt.Sprint(got) != fmt.Sprint(want) || !strings.Contains(out.Entries[0].Result, "is used by") || out.Entries[1].Result != "ok" {
		t.Fatalf("audit entries %v (%+v)", got, out.Entries)
	}
}
