package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/auth"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
)

// pinned sends a recommend (or a batch) pinned to arm with key.
func pinned(t *testing.T, url, key, arm string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(api.PinHeader, arm)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// QA pins an arm with X-Modelgate-Arm (gRPC: x-modelgate-arm): only an ml
// or admin key may; the arm serves even paused; the prediction is no trial,
// and its feedback is accepted and ignored.
func TestPinningAnArm(t *testing.T) {
	a := startAuthApp(t, "", true)
	keys := map[string]string{}
	for _, s := range auth.AllScopes {
		keys[s] = a.newKey(t, "k-"+s, 0, 0, s)
	}
	rec := a.url + "/v1/endpoints/home/recommend"
	if st, body := pinned(t, rec, keys[auth.ScopeClient], "mf@2", map[string]any{"user_id": "u"}); st != 403 {
		t.Fatalf("a client key pins: %d %s; want 403", st, body)
	}
	if st, body := pinned(t, a.url+"/v1/endpoints/home/recommend/batch", keys[auth.ScopeClient], "mf@2",
		map[string]any{"requests": []any{map[string]any{"user_id": "u"}}}); st != 403 {
		t.Fatalf("a client key pins a batch: %d %s; want 403", st, body)
	}
	if st, body := pinned(t, rec, keys[auth.ScopeML], "mf@9", map[string]any{"user_id": "u"}); st != 400 || !bytes.Contains(body, []byte("invalid_arm")) {
		t.Fatalf("pinning an arm not on the endpoint: %d %s; want 400 invalid_arm", st, body)
	}
	if r := do(t, "PATCH", a.url+"/v1/endpoints/home/arms/mf@2", keys[auth.ScopeML], false, map[string]any{"state": "paused"}); r.status != 200 {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	for _, scope := range []string{auth.ScopeML, auth.ScopeAdmin} {
		st, body := pinned(t, rec, keys[scope], "mf@2", map[string]any{"user_id": "qa"})
		var resp recResp
		if err := json.Unmarshal(body, &resp); st != 200 || err != nil || resp.Arm != "mf@2" || !resp.Pinned {
			t.Fatalf("%s key pins paused mf@2: %d %s", scope, st, body)
		}
		fb := do(t, "POST", a.url+"/v1/feedback", keys[auth.ScopeClient], false, map[string]any{"events": []any{
			map[string]any{"prediction_id": resp.PredictionID, "type": "click", "item_id": resp.Items[0].ID}}})
		if fb.status != 200 || !bytes.Contains(fb.body, []byte(`"accepted":1`)) {
			t.Fatalf("feedback on a pinned prediction: %d %s", fb.status, fb.body)
		}
	}
	st, body := pinned(t, a.url+"/v1/endpoints/home/recommend/batch", keys[auth.ScopeML], "mf@2",
		map[string]any{"requests": []any{map[string]any{"user_id": "a"}, map[string]any{"user_id": "b"}}})
	var batch struct {
		Responses []recResp `json:"responses"`
	}
	if err := json.Unmarshal(body, &batch); st != 200 || err != nil || len(batch.Responses) != 2 || !batch.Responses[0].Pinned || batch.Responses[1].Arm != "mf@2" {
		t.Fatalf("a pinned batch: %d %s", st, body)
	}

	// gRPC: the metadata, the same rule.
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	call := func(key string) (*pb.RecommendResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key, "x-modelgate-arm", "mf@2")
		return c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "home", UserId: "qa"})
	}
	if _, err := call(keys[auth.ScopeClient]); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gRPC, a client key pins: %v; want PermissionDenied", err)
	}
	if r, err := call(keys[auth.ScopeML]); err != nil || r.GetArm() != "mf@2" || !r.GetPinned() {
		t.Fatalf("gRPC, an ml key pins: %+v, %v", r, err)
	}

	// None of it is a trial of mf@2 (paused: nothing else served it).
	var rep reportResp
	if r := do(t, "GET", a.url+"/v1/endpoints/home/report", keys[auth.ScopeAnalyst], false, nil); r.status != 200 {
		t.Fatalf("report: %d", r.status)
	} else if err := json.Unmarshal(r.body, &rep); err != nil {
		t.Fatal(err)
	}
	if tr, su := rep.arm("mf@2"); tr != 0 || su != 0 {
		t.Fatalf("mf@2 has %d trials, %g successes after pinned calls only; want none", tr, su)
	}
}
