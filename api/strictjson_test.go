package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/fault"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/store"
)

// strictServer is the test server with API keys managed (so POST /v1/keys
// exists) but not enforced.
func strictServer(t *testing.T) *Server {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := auth.NewKeys(context.Background(), db, nil, auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return authServer(t, nil, nil, &Auth{Keys: keys})
}

// Every request body is strict JSON: exact-case names, no repeated key at
// any depth, and errors naming the value's full path once.
func TestStrictJSONBodies(t *testing.T) {
	h := strictServer(t).Handler()
	const (
		recommend = "/v1/endpoints/home/recommend"
		feedback  = "/v1/feedback"
		version   = "/v1/models/mf/versions/9"
		endpoint  = "/v1/endpoints/shop"
		arms      = "/v1/endpoints/home/arms"
		arm       = "/v1/endpoints/home/arms/mf@1"
		keys      = "/v1/keys"
	)
	backend := `"backend": {"type": "embedded", "path": "../examples/demo/models/mf/1"}`
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field, msg         string
	}{
		// recommend
		{"wrong-case name", "POST", recommend, `{"User_ID": "u1"}`, 400, "unknown_field", "User_ID", `did you mean "user_id"?`},
		{"wrong-case context", "POST", recommend, `{"user_id": "u1", "Context": {}}`, 400, "unknown_field", "Context", `"context"`},
		{"repeated key", "POST", recommend, `{"user_id": "a", "user_id": "b"}`, 400, "invalid_json", "user_id", "repeated key"},
		{"repeated context key", "POST", recommend, `{"user_id": "a", "context": {"surface": "x", "surface": "y"}}`, 400, "invalid_json", "context.surface", "repeated key"},
		{"repeated key inside features", "POST", recommend, `{"user_id": "a", "features": {"f": [{"a": 1, "a": 2}]}}`, 400, "invalid_json", "features.f[0].a", "repeated key"},
		{"context value of the wrong type", "POST", recommend, `{"user_id": "a", "context": {"surface": 3}}`, 400, "invalid_type", "context.surface", "expected a string, got JSON number 3"},
		{"context value too long", "POST", recommend, `{"user_id": "a", "context": {"surface": "` + long + `"}}`, 400, "invalid_context", "context.surface", "at most 256"},
		{"huge feature number", "POST", recommend, `{"user_id": "a", "features": {"age": 1e400}}`, 400, "invalid_number", "features.age", "1e400 is out of range"},
		{"k out of range", "POST", recommend, `{"user_id": "a", "k": 0}`, 400, "invalid_k", "k", "must be between 1 and 1000"},
		{"missing user_id", "POST", recommend, `{"context": {}}`, 400, "missing_field", "user_id", "required"},
		{"keys differing in case are distinct", "POST", recommend, `{"user_id": "a", "context": {"surface": "x", "Surface": "y"}, "features": {"a": 1, "A": 2}}`, 200, "", "", ""},
		// feedback
		{"feedback wrong-case name", "POST", feedback, `{"Events": []}`, 400, "unknown_field", "Events", `did you mean "events"?`},
		{"feedback wrong-case event field", "POST", feedback, `{"events": [{"prediction_id": "p", "Type": "click", "item_id": "i"}]}`, 400, "unknown_field", "events[0].Type", `"type"`},
		{"feedback repeated key", "POST", feedback, `{"events": [], "events": []}`, 400, "invalid_json", "events", "repeated key"},
		{"feedback repeated event key", "POST", feedback, `{"events": [{"type": "click"}, {"type": "click", "type": "x"}]}`, 400, "invalid_json", "events[1].type", "repeated key"},
		// model versions
		{"version wrong-case name", "PUT", version, `{"Backend": {"type": "embedded", "path": "/m"}}`, 400, "unknown_field", "Backend", `"backend"`},
		{"version wrong-case backend field", "PUT", version, `{"backend": {"type": "embedded", "Path": "/m"}}`, 400, "unknown_field", "backend.Path", `"path"`},
		{"version repeated backend key", "PUT", version, `{"backend": {"type": "embedded", "path": "/a", "path": "/b"}}`, 400, "invalid_json", "backend.path", "repeated key"},
		{"version repeated key in the feature spec", "PUT", version, `{` + backend + `, "features": {"inputs": {}, "inputs": {}}}`, 400, "invalid_json", "features.inputs", "repeated key"},
		{"version repeated key in metadata", "PUT", version, `{` + backend + `, "metadata": {"owner": "a", "owner": "b"}}`, 400, "invalid_json", "metadata.owner", "repeated key"},
		{"version unavailable backend", "PUT", version, `{"backend": {"type": "torchscript"}}`, 400, "unsupported_backend", "backend.type", `"torchscript" is not available`},
		{"version with a wrong-case type is not an unavailable backend", "PUT", version, `{"backend": {"Type": "torchscript"}}`, 400, "unknown_field", "backend.Type", `"type"`},
		// endpoints
		{"endpoint wrong-case name", "PUT", endpoint, `{"Arms": ["mf@1"]}`, 400, "unknown_field", "Arms", `"arms"`},
		{"endpoint repeated key", "PUT", endpoint, `{"arms": ["mf@1"], "arms": ["mf@2"]}`, 400, "invalid_json", "arms", "repeated key"},
		{"endpoint wrong-case policy field", "PUT", endpoint, `{"arms": ["mf@1"], "policy": {"Segment_By": ["surface"]}}`, 400, "unknown_field", "policy.Segment_By", `"segment_by"`},
		{"endpoint repeated key deep in the policy", "PUT", endpoint, `{"arms": ["mf@1"], "policy": {"stop_rule": {"p_best": 0.9, "p_best": 0.8}}}`, 400, "invalid_json", "policy.stop_rule.p_best", "repeated key"},
		{"endpoint policy error", "PUT", endpoint, `{"arms": ["mf@1"], "policy": {"type": "uniform", "half_life": "1h"}}`, 400, "invalid_policy", "policy.half_life", "applies to discounted-thompson only"},
		// arms
		{"add arm wrong-case name", "POST", arms, `{"Arm": "mf@2"}`, 400, "unknown_field", "Arm", `"arm"`},
		{"add arm repeated key", "POST", arms, `{"arm": "mf@1", "arm": "mf@2"}`, 400, "invalid_json", "arm", "repeated key"},
		{"add arm without arm", "POST", arms, `{}`, 400, "missing_field", "arm", "required"},
		{"arm state wrong-case name", "PATCH", arm, `{"State": "paused"}`, 400, "unknown_field", "State", `"state"`},
		{"arm state repeated key", "PATCH", arm, `{"state": "paused", "state": "active"}`, 400, "invalid_json", "state", "repeated key"},
		{"arm state unknown", "PATCH", arm, `{"state": "asleep"}`, 400, "invalid_state", "state", `must be "active" or "paused"`},
		// keys
		{"key wrong-case name", "POST", keys, `{"Name": "k", "scopes": ["admin"]}`, 400, "unknown_field", "Name", `"name"`},
		{"key repeated key", "POST", keys, `{"name": "k", "name": "j", "scopes": ["admin"]}`, 400, "invalid_json", "name", "repeated key"},
		{"key repeated rate", "POST", keys, `{"name": "k", "scopes": ["admin"], "rate": 1, "rate": 2}`, 400, "invalid_json", "rate", "repeated key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, bytes.NewReader([]byte(tc.body))))
			checkAnswer(t, rec)
			if rec.Code != tc.status {
				t.Fatalf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, rec.Code, rec.Body, tc.status)
			}
			if tc.status < 400 {
				return
			}
			var e ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			d := e.Error
			if d.Code != tc.code || d.Field != tc.field || !strings.Contains(d.Message, tc.msg) {
				t.Fatalf("%s %s: got %+v, want code %s, field %q, message containing %q", tc.method, tc.body, d, tc.code, tc.field, tc.msg)
			}
			if namesField(d.Message, d.Field) {
				t.Errorf("the message %q names its field %q again", d.Message, d.Field)
			}
		})
	}
}

// namesField reports whether msg starts with field or with field's last
// element ("k must…", "tls applies…").
func namesField(msg, field string) bool {
	last := field[strings.LastIndexByte(field, '.')+1:]
	if i := strings.IndexByte(last, '['); i >= 0 {
		last = last[:i]
	}
	for _, f := range []string{field, last} {
		if rest, ok := strings.CutPrefix(strings.ToLower(msg), strings.ToLower(f)); f != "" && ok && (rest == "" || strings.ContainsAny(rest[:1], " :")) {
			return true
		}
	}
	return false
}

// Over gRPC the status text is "code: field: message", the field named once.
func TestGRPCErrorNamesTheFieldOnce(t *testing.T) {
	s := observedServer(t, nil, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(s.GRPCServerOptions()...)
	s.RegisterGRPC(gs)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-served })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := pb.NewGatewayClient(conn)
	for _, tc := range []struct {
		name string
		req  *pb.RecommendRequest
		want string
	}{
		{"k", &pb.RecommendRequest{Endpoint: "home", UserId: "u", K: -1}, "invalid_k: k: must be between 1 and 1000"},
		{"user_id", &pb.RecommendRequest{Endpoint: "home"}, "missing_field: user_id: required"},
		{"context value", &pb.RecommendRequest{Endpoint: "home", UserId: "u", Context: map[string]string{"surface": strings.Repeat("x", 300)}},
			"invalid_context: context.surface: keys are at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Recommend(context.Background(), tc.req)
			msg := status.Convert(err).Message()
			if !strings.HasPrefix(msg, tc.want) {
				t.Fatalf("status text %q, want it to start with %q", msg, tc.want)
			}
		})
	}
}

// BenchmarkDecodeRecommend is the strict decoding of a typical recommend
// body alone: context, features of several kinds, candidates and k.
func BenchmarkDecodeRecommend(b *testing.B) {
	body := []byte(`{"user_id": "u42", "context": {"surface": "music", "country": "FR", "device": "ios"},
		"features": {"recent_items": ["i3", "i9", "i17", "i21", "i40"], "age": 31, "premium": true, "score": 0.75},
		"candidates": ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11", "i12", "i13", "i14", "i15", "i16"],
		"exclude": ["i9"], "k": 10}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var in RecommendRequest
		if err := fault.DecodeJSON(body, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// The recommend body decodes into the values the router gets.
func TestDecodeRecommendBody(t *testing.T) {
	var in RecommendRequest
	err := fault.DecodeJSON([]byte(`{"user_id": "u42", "context": {"surface": "music"}, "features": {"recent_items": ["i3"], "age": 31},
		"candidates": ["i1"], "exclude": ["i9"], "k": 10}`), &in)
	if err != nil {
		t.Fatal(err)
	}
	items, _ := in.Features["recent_items"].([]any)
	if in.UserID == nil || *in.UserID != "u42" || in.Context["surface"] != "music" || in.Features["age"] != 31.0 ||
		len(items) != 1 || items[0] != "i3" || len(in.Candidates) != 1 || len(in.Exclude) != 1 || in.K == nil || *in.K != 10 {
		t.Fatalf("decoded %+v", in)
	}
}
