package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/telemetry"
)

// Whose fault is a failed model call, over HTTP against a TF Serving
// fake: INVALID_ARGUMENT is the request's (rejected_input: fallback, else
// 400 model_rejected_input, never a guardrail input, no trial); a
// non-finite score is the model's (bad_output: fallback, else 503), and
// never a 200 with an unusable body.
func TestModelCallFaultsOverHTTP(t *testing.T) {
	m := ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable, 2: tfservingtest.StateAvailable})
	m.Score = func(v int64, item string) float64 {
		if v == 2 && item == "i3" {
			return math.Inf(1)
		}
		return tfservingtest.DefaultScore(v, item)
	}
	tf := startTF(t, m)
	tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: envOf()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := startAppTel(t, tel)
	for v := 1; v <= 2; v++ {
		if st := call(t, "PUT", fmt.Sprintf("%s/v1/models/ranker/versions/%d", a.url, v), rankerBody(tf.Addr(), v, 1000), nil); st != http.StatusCreated {
			t.Fatalf("register ranker@%d: %d", v, st)
		}
	}
	guard := `"policy": {"type": "uniform", "guardrails": {"max_error_rate": 0.5, "window": "1h", "min_requests": 5}}`
	for name, body := range map[string]string{
		"rej":     `{"arms": ["ranker@1", "mf@1"], "fallback": "mf@1", ` + guard + `}`,
		"rejonly": `{"arms": ["ranker@1"]}`,
		"inf":     `{"arms": ["ranker@2", "mf@1"], "fallback": "mf@1", "policy": {"type": "uniform"}}`,
		"infonly": `{"arms": ["ranker@2"]}`,
	} {
		if st := call(t, "PUT", a.url+"/v1/endpoints/"+name, body, nil); st != http.StatusCreated {
			t.Fatalf("endpoint %s: %d", name, st)
		}
	}
	recommend := func(endpoint string) (int, recResp, errResp) {
		var raw map[string]any
		body := map[string]any{"user_id": "u1", "candidates": cands, "k": 3}
		st := call(t, "POST", a.url+"/v1/endpoints/"+endpoint+"/recommend", body, &raw)
		var rec recResp
		var e errResp
		remarshal(t, raw, &rec)
		remarshal(t, raw, &e)
		if st == 200 && (rec.PredictionID == "" || rec.Arm == "" || len(rec.Items) == 0) {
			t.Fatalf("%s: 200 with an unusable body %v", endpoint, raw)
		}
		if st != 200 && e.Error.Code == "" {
			t.Fatalf("%s: %d without an error body: %v", endpoint, st, raw)
		}
		return st, rec, e
	}
	msg := strings.Repeat("shape [1,8] is not [1,9]; ", 12) + "TAIL" // 316 bytes
	tf.SetFault(tfservingtest.Fault{Fail: codes.InvalidArgument, Message: msg})

	// No arm accepts the input: 400 with the backend's message, cut.
	for range 5 {
		st, _, e := recommend("rejonly")
		if st != 400 || e.Error.Code != "model_rejected_input" || !strings.Contains(e.Error.Message, msg[:150]) ||
			strings.Contains(e.Error.Message, "TAIL") || !strings.Contains(e.Error.Message, "ranker@1") {
			t.Fatalf("rejonly: %d %+v, want 400 model_rejected_input with the message cut at 200", st, e.Error)
		}
	}
	// The fallback serves what ranker@1 refuses; the guardrail never sees
	// the refusals.
	for range 30 {
		if st, rec, _ := recommend("rej"); st != 200 || rec.Arm != "mf@1" {
			t.Fatalf("rej: %d from %q, want mf@1 to serve", st, rec.Arm)
		}
	}
	// Then ranker@1 serves S calls and fails E until the guardrail pauses
	// it: its reason counts E of S+E calls, none of the refusals.
	tf.SetFault(tfservingtest.Fault{})
	served := 0
	for range 20 {
		if st, rec, _ := recommend("rej"); st == 200 && rec.Arm == "ranker@1" {
			served++
		}
	}
	if served == 0 {
		t.Fatal("ranker@1 never served 20 uniform requests: paused by the guardrail over refused inputs?")
	}
	tf.SetFault(tfservingtest.Fault{Fail: codes.Internal}) // sick, but still reachable: chosen again
	var ep registry.Endpoint
	waitUntil(t, 20*time.Second, func() bool {
		recommend("rej")
		call(t, "GET", a.url+"/v1/endpoints/rej", nil, &ep)
		return ep.ArmStates["ranker@1"] == registry.Paused
	})
	mm := regexp.MustCompile(`\((\d+) of (\d+) calls\)`).FindStringSubmatch(ep.ArmReasons["ranker@1"])
	if mm == nil {
		t.Fatalf("guardrail reason %q", ep.ArmReasons["ranker@1"])
	}
	errs, calls := atoi(mm[1]), atoi(mm[2])
	if calls-errs != served {
		t.Fatalf("the guardrail counted %d successful calls of ranker@1, want the %d it served: refused inputs were fed to it (%q)",
			calls-errs, served, ep.ArmReasons["ranker@1"])
	}
	tf.SetFault(tfservingtest.Fault{})

	// A non-finite score: bad_output, the fallback serves, or a 503.
	for range 20 {
		if st, rec, _ := recommend("inf"); st != 200 || rec.Arm != "mf@1" {
			t.Fatalf("inf: %d from %q, want mf@1 to serve", st, rec.Arm)
		}
	}
	if st, _, e := recommend("infonly"); st != 503 || e.Error.Code != "no_healthy_arm" {
		t.Fatalf("infonly: %d %+v, want 503 no_healthy_arm", st, e.Error)
	}

	// No trial for a request nobody served; classes in the report and the
	// metric.
	var rep report.Report
	call(t, "GET", a.url+"/v1/endpoints/rejonly/report", nil, &rep)
	if len(rep.Arms) != 1 || rep.Arms[0].Trials != 0 || rep.Arms[0].Errors["rejected_input"] != 5 {
		t.Fatalf("rejonly report %+v: want no trial and 5 rejected_input errors", rep.Arms)
	}
	call(t, "GET", a.url+"/v1/endpoints/inf/report", nil, &rep)
	for _, arm := range rep.Arms {
		if arm.Arm == "ranker@2" && (arm.Trials != 0 || arm.Errors["bad_output"] == 0) {
			t.Fatalf("inf report %+v: want ranker@2 without trials, with bad_output errors", arm)
		}
	}
	got := samples(scrapeMetrics(t, a.url)[telemetry.ArmErrors])
	if got["arm=ranker@1,class=rejected_input,endpoint=rejonly"] != 5 || got["arm=ranker@2,class=bad_output,endpoint=infonly"] != 1 {
		t.Fatalf("%s: %v", telemetry.ArmErrors, got)
	}
}

// remarshal decodes the JSON form of v into out.
func remarshal(t *testing.T, v any, out any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(raw, out)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// A number that is not finite in features is the client's 400 naming the
// field: over HTTP a number too large for a float64, over gRPC a NaN or
// ±Inf in the Struct.
func TestNonFiniteFeatures(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	grpcAddr := a.grpcAddr
	for _, body := range []string{
		`{"user_id": "u1", "features": {"recent_items": ["i1"], "age": 1e400}}`,
		`{"user_id": "u1", "features": {"age": -1E999}}`,
	} {
		var e errResp
		if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", body, &e); st != 400 || e.Error.Field != "features.age" || e.Error.Code != "invalid_number" {
			t.Fatalf("%s: %d %+v, want 400 invalid_number on features.age", body, st, e.Error)
		}
	}
	var e errResp
	body := `{"user_id": "u1", "features": {"history": {"ages": [1, 1e308, 3e308]}}}`
	if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", body, &e); st != 400 || e.Error.Field != "features.history.ages[2]" {
		t.Fatalf("%s: %d %+v, want 400 on features.history.ages[2]", body, st, e.Error)
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		feats map[string]*structpb.Value
		field string
	}{
		{map[string]*structpb.Value{"age": structpb.NewNumberValue(math.NaN())}, "features.age"},
		{map[string]*structpb.Value{"age": structpb.NewNumberValue(math.Inf(1))}, "features.age"},
		{map[string]*structpb.Value{"ok": structpb.NewNumberValue(1), "l": structpb.NewListValue(&structpb.ListValue{
			Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewNumberValue(math.Inf(-1))}})}, "features.l[1]"},
	} {
		_, err := c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "home", UserId: "u1", Features: &structpb.Struct{Fields: tc.feats}})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.field+":") || !strings.Contains(st.Message(), "invalid_number") {
			t.Fatalf("gRPC Recommend with %v: %v, want InvalidArgument naming %s", tc.feats, err, tc.field)
		}
	}
	// Finite numbers still pass.
	feats, _ := structpb.NewStruct(map[string]any{"age": 31.0, "recent_items": []any{"i1"}})
	if _, err := c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "home", UserId: "u1", Features: feats}); err != nil {
		t.Fatal(err)
	}
}

// A prediction accepts events for as many distinct item_ids as it
// returned items; the item_id is not checked against the served list.
func TestTooManyEventsOverHTTP(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	var rec recResp
	if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1", "k": 2}, &rec); st != 200 || len(rec.Items) != 2 {
		t.Fatalf("recommend: %d %+v", st, rec)
	}
	ev := func(typ, item string) map[string]string {
		return map[string]string{"prediction_id": rec.PredictionID, "type": typ, "item_id": item}
	}
	steps := []struct {
		events               []map[string]string
		accepted, duplicates int
		rejected             string // "index:code,…"
	}{
		{[]map[string]string{ev("impression", ""), ev("click", rec.Items[0].ID)}, 2, 0, ""},
		// Not one of the served items, but the second distinct one: accepted.
		{[]map[string]string{ev("click", "never-served")}, 1, 0, ""},
		{[]map[string]string{ev("click", rec.Items[1].ID), ev("click", rec.Items[0].ID), ev("impression", "never-served")}, 1, 1, "0:too_many_events"},
	}
	for i, s := range steps {
		var fb fbResp
		if st := call(t, "POST", a.url+"/v1/feedback", map[string]any{"events": s.events}, &fb); st != 200 {
			t.Fatalf("step %d: feedback %d", i, st)
		}
		var rej []string
		for _, r := range fb.Rejected {
			rej = append(rej, fmt.Sprintf("%d:%s", r.Index, r.Code))
		}
		if fb.Accepted != s.accepted || fb.Duplicates != s.duplicates || strings.Join(rej, ",") != s.rejected {
			t.Fatalf("step %d: %+v, want %d accepted, %d duplicates, rejected %q", i, fb, s.accepted, s.duplicates, s.rejected)
		}
	}
}
