package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/backend/oip/oiptest"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/telemetry"
)

// oipRanker is a fake Triton model: a user hash bucket and the candidates
// in, one score per candidate out (rankerSpec's inputs).
func oipRanker() *oiptest.Model {
	return &oiptest.Model{Name: "ranker", Versions: []string{"1"},
		Inputs: []oiptest.Tensor{
			{Name: "user", Datatype: "INT64", Shape: []int64{-1}},
			{Name: "cands", Datatype: "BYTES", Shape: []int64{-1, -1}},
		},
		Outputs:         []oiptest.Tensor{{Name: "scores", Datatype: "FP32", Shape: []int64{-1, -1}}},
		CandidatesInput: "cands"}
}

func oipBody(target, protocol string, timeoutMS int) string {
	return fmt.Sprintf(`{"backend": {"type": "oip", "target": %q, "protocol": %q, "model_name": "ranker", "model_version": "1",
		"timeout_ms": %d, "outputs": {"scores": "scores"}}, %s}`, target, protocol, timeoutMS, rankerSpec)
}

func startOIP(t *testing.T, m *oiptest.Model) *oiptest.Server {
	t.Helper()
	s, err := oiptest.Start(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func oipAddr(s *oiptest.Server, protocol string) string {
	if protocol == oip.ProtocolHTTP {
		return s.HTTPAddr()
	}
	return s.GRPCAddr()
}

// serveOIP registers version ranker@version on s over protocol and an
// endpoint "oip-PROTOCOL" serving it alone, and returns the endpoint.
func serveOIP(t *testing.T, a *testApp, s *oiptest.Server, protocol, version string) string {
	t.Helper()
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/"+version, oipBody(oipAddr(s, protocol), protocol, 500), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	ep := "oip-" + protocol
	if st := call(t, "PUT", a.url+"/v1/endpoints/"+ep, `{"arms": ["ranker@`+version+`"]}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	return ep
}

// A version registered through the admin API is served over either
// protocol: the request's tensors reach the server and the items are the
// candidates ranked by its scores.
func TestOIPThroughTheGateway(t *testing.T) {
	s := startOIP(t, oipRanker())
	a := startApp(t, demoConfig(t, ""))
	for i, protocol := range []string{oip.ProtocolGRPC, oip.ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			version := fmt.Sprint(i + 1)
			ep := serveOIP(t, a, s, protocol, version)
			var rec recResp
			if st := call(t, "POST", a.url+"/v1/endpoints/"+ep+"/recommend", map[string]any{"user_id": "u42", "candidates": cands, "exclude": []string{"i2"}, "k": 4}, &rec); st != 200 {
				t.Fatalf("recommend: %d", st)
			}
			r, ok := s.LastRequest()
			if !ok || r.Protocol != protocol {
				t.Fatalf("the server received no %s inference request", protocol)
			}
			req := r.Infer
			if req.GetModelName() != "ranker" || req.GetModelVersion() != "1" {
				t.Fatalf("model %q version %q", req.GetModelName(), req.GetModelVersion())
			}
			for _, in := range req.GetInputs() {
				switch in.GetName() {
				case "user":
					if in.GetDatatype() != "INT64" || !slices.Equal(in.GetShape(), []int64{1}) ||
						!slices.Equal(in.GetContents().GetInt64Contents(), []int64{featurizer.HashBucket("u42", 10000)}) {
						t.Fatalf("user tensor %v", in)
					}
				case "cands":
					if in.GetDatatype() != "BYTES" || !slices.Equal(in.GetShape(), []int64{1, 7}) || len(in.GetContents().GetBytesContents()) != 7 {
						t.Fatalf("cands tensor %v: want [1, 7] without the excluded item", in)
					}
				default:
					t.Fatalf("unexpected input %q", in.GetName())
				}
			}
			rest := slices.DeleteFunc(slices.Clone(cands), func(c string) bool { return c == "i2" })
			want := backendtest.Ranked(rest, func(id string) float64 { return float64(float32(oiptest.DefaultScore("1", id))) }, nil, 4)
			got := make([]string, len(rec.Items))
			for i, it := range rec.Items {
				got[i] = it.ID
			}
			for i := range want {
				if i >= len(got) || got[i] != want[i].ID {
					t.Fatalf("items %v, want %v", got, want)
				}
			}
			if rec.Arm != "ranker@"+version || rec.Fallback {
				t.Fatalf("served by %s (fallback %v)", rec.Arm, rec.Fallback)
			}
			var mv map[string]any
			call(t, "GET", a.url+"/v1/models/ranker/versions/"+version, nil, &mv)
			if b := mv["backend"].(map[string]any); b["type"] != "oip" || b["protocol"] != protocol || b["target"] != oipAddr(s, protocol) {
				t.Fatalf("stored backend %v", b)
			}
		})
	}
}

// A batch recommend stacks the entries that chose an oip arm into one
// inference call, over either protocol, and each entry gets what it would
// alone.
func TestOIPBatchRecommend(t *testing.T) {
	m := oipRanker()
	m.KeyInput = "user" // rows scored by their own user
	s := startOIP(t, m)
	a := startApp(t, demoConfig(t, ""))
	for i, protocol := range []string{oip.ProtocolGRPC, oip.ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			ep := serveOIP(t, a, s, protocol, fmt.Sprint(i+1))
			users := []string{"u1", "u2", "u3"}
			var entries []map[string]any
			for j, u := range users {
				entries = append(entries, map[string]any{"user_id": u, "candidates": cands, "k": 2 + j})
			}
			before := s.Calls("ModelInfer")
			var batch struct {
				Responses []recResp `json:"responses"`
			}
			if st := call(t, "POST", a.url+"/v1/endpoints/"+ep+"/recommend/batch", map[string]any{"requests": entries}, &batch); st != 200 || len(batch.Responses) != len(users) {
				t.Fatalf("batch: %d, %d responses", st, len(batch.Responses))
			}
			if n := s.Calls("ModelInfer") - before; n != 1 {
				t.Fatalf("%d inference calls for the batch, want 1", n)
			}
			r, _ := s.LastRequest()
			for _, in := range r.Infer.GetInputs() {
				if in.GetShape()[0] != int64(len(users)) {
					t.Fatalf("input %q of shape %v: not stacked", in.GetName(), in.GetShape())
				}
			}
			for j, e := range entries {
				var alone recResp
				if st := call(t, "POST", a.url+"/v1/endpoints/"+ep+"/recommend", e, &alone); st != 200 {
					t.Fatalf("recommend: %d", st)
				}
				if got := batch.Responses[j]; got.Fallback || !slices.Equal(got.Items, alone.Items) {
					t.Fatalf("entry %d: %+v (fallback %v), alone %+v", j, got.Items, got.Fallback, alone.Items)
				}
			}
			if slices.Equal(batch.Responses[0].Items, batch.Responses[1].Items[:2]) {
				t.Fatalf("users u1 and u2 got the same items %v", batch.Responses[0].Items)
			}
		})
	}
}

// Registration checks the server; every mismatch is a 400 invalid_model
// naming its field, and nothing is stored.
func TestOIPRegistrationErrors(t *testing.T) {
	s := startOIP(t, oipRanker())
	a := startApp(t, demoConfig(t, ""))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	for _, protocol := range []string{oip.ProtocolGRPC, oip.ProtocolHTTP} {
		body := oipBody(oipAddr(s, protocol), protocol, 100)
		cases := []struct {
			name, body, code, field, msg string
		}{
			{"target down", oipBody(down, protocol, 100), "invalid_model", "backend.target", "unreachable"},
			{"unknown model", strings.Replace(body, `"model_name": "ranker"`, `"model_name": "nope"`, 1), "invalid_model", "backend.model_version", "nope"},
			{"unknown version", strings.Replace(body, `"model_version": "1"`, `"model_version": "9"`, 1), "invalid_model", "backend.model_version", "9"},
			{"model lacks an input", strings.Replace(body, `"cands":`, `"age": {"from": "features.age", "dtype": "float32", "default": 1}, "cands":`, 1), "invalid_model", "features.inputs.age", "age"},
			{"wrong datatype", strings.Replace(body, `"buckets": 10000, "dtype": "int64"`, `"buckets": 10000, "dtype": "int32"`, 1), "invalid_model", "features.inputs.user", "INT64"},
			{"missing output", strings.Replace(body, `{"scores": "scores"}`, `{"scores": "probabilities"}`, 1), "invalid_model", "backend.outputs.scores", "probabilities"},
			{"bad protocol", strings.Replace(body, `"protocol": "`+protocol+`"`, `"protocol": "rest"`, 1), "invalid_backend", "backend.protocol", "rest"},
			{"unknown field", strings.Replace(body, `"timeout_ms"`, `"signature_name": "x", "timeout_ms"`, 1), "unknown_field", "backend.signature_name", ""},
		}
		for _, tc := range cases {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				var e errResp
				st := call(t, "PUT", a.url+"/v1/models/ranker/versions/7", tc.body, &e)
				if st != 400 || e.Error.Code != tc.code || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.msg) {
					t.Fatalf("got %d %+v, want 400 %s on %s mentioning %q", st, e.Error, tc.code, tc.field, tc.msg)
				}
				if st := call(t, "GET", a.url+"/v1/models/ranker/versions/7", nil, nil); st != 404 {
					t.Fatal("a refused version was stored")
				}
			})
		}
	}
}

// auto_arms is not offered for oip models, and a failing oip arm falls
// back to the endpoint's fallback.
func TestOIPAutoArmsRefusedAndFallback(t *testing.T) {
	s := startOIP(t, oipRanker())
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", oipBody(s.GRPCAddr(), "grpc", 200), nil); st != 201 {
		t.Fatalf("register: %d", st)
	}
	var e errResp
	st := call(t, "PUT", a.url+"/v1/endpoints/oip", `{"arms": ["ranker@1"], "auto_arms": {"model": "ranker", "interval": "1s"}}`, &e)
	if st != 400 || e.Error.Code != "invalid_auto_arms" || e.Error.Field != "auto_arms.model" || !strings.Contains(e.Error.Message, "oip") {
		t.Fatalf("auto_arms on an oip model: %d %+v", st, e.Error)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/oip", `{"arms": ["ranker@1", "mf@1"], "fallback": "mf@1", "policy": {"type": "uniform"}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	s.SetFault(oiptest.Fault{Fail: codes.Internal})
	for range 20 {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/oip/recommend", map[string]any{"user_id": "u1", "candidates": cands, "k": 3}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if rec.Arm == "ranker@1" && !rec.Fallback {
			t.Fatal("a failing oip arm answered")
		}
	}
	if s.Calls("ModelInfer") == 0 {
		t.Fatal("the oip arm was never tried")
	}
}

// The W3C traceparent of the gateway's backend span reaches the OIP
// server, over either protocol.
func TestOIPTraceparent(t *testing.T) {
	rcv := startReceiver(t)
	s := startOIP(t, oipRanker())
	tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: envOf(
		"OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+rcv.addr, "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := startAppTel(t, tel)
	for i, protocol := range []string{oip.ProtocolGRPC, oip.ProtocolHTTP} {
		ep := serveOIP(t, a, s, protocol, fmt.Sprint(i+1))
		traceID := fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02d", i+10)
		body, _ := json.Marshal(map[string]any{"user_id": "u42", "candidates": cands, "k": 3})
		req, _ := http.NewRequest("POST", a.url+"/v1/endpoints/"+ep+"/recommend", bytes.NewReader(body))
		req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("recommend: %d", resp.StatusCode)
		}
		if err := tel.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		span := rcv.trace(traceID)["oip.infer"]
		if span == nil {
			t.Fatalf("%s: no oip.infer span in the trace", protocol)
		}
		r, _ := s.LastRequest()
		want := "00-" + traceID + "-" + hex.EncodeToString(span.GetSpanId()) + "-01"
		if tp := r.Header["traceparent"]; len(tp) != 1 || tp[0] != want {
			t.Fatalf("%s: the server got traceparent %v, want %s", protocol, tp, want)
		}
	}
}

// examples/oip/config.yaml is a valid config: its oip backends parse as
// registered versions would.
func TestOIPExampleConfig(t *testing.T) {
	cfg, err := config.Load("../examples/oip/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ds := drivers(nil, cfg)
	for _, m := range cfg.Models {
		var body struct {
			Backend  json.RawMessage `json:"backend"`
			Features json.RawMessage `json:"features"`
		}
		if err := json.Unmarshal(m.Body, &body); err != nil {
			t.Fatal(err)
		}
		typ, _, err := ds.Parse(body.Backend)
		if err != nil || typ != oip.Type {
			t.Fatalf("%s@%s: backend %s: %v", m.Name, m.Version, typ, err)
		}
		if _, err := featurizer.Parse(body.Features); err != nil {
			t.Fatalf("%s@%s: features: %v", m.Name, m.Version, err)
		}
	}
	if len(cfg.Models) != 2 || len(cfg.Endpoints) != 1 {
		t.Fatalf("%d models, %d endpoints", len(cfg.Models), len(cfg.Endpoints))
	}
}
