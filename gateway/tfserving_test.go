package gateway

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
)

// ranker is a fake TF Serving model: a user hash bucket and the candidates
// in, one score per candidate out.
func ranker(versions map[int64]tfservingtest.State) *tfservingtest.Model {
	sig := tfservingtest.Signature(map[string]tfservingtest.Spec{
		"user":  {DType: framework.DataType_DT_INT64, Shape: []int64{-1}},
		"cands": {DType: framework.DataType_DT_STRING, Shape: []int64{-1, -1}},
	}, map[string]tfservingtest.Spec{"scores": {DType: framework.DataType_DT_FLOAT, Shape: []int64{-1, -1}}})
	return &tfservingtest.Model{Name: "ranker", Versions: versions,
		Signatures: map[string]*tfpb.SignatureDef{"serving_default": sig}, CandidatesInput: "cands"}
}

const rankerSpec = `"features": {"inputs": {
	"user": {"from": "user_id", "transform": "hash_bucket", "buckets": 10000, "dtype": "int64"},
	"cands": {"from": "candidates", "transform": "list", "dtype": "string"}}}`

func rankerBody(target string, version int, timeoutMS int) string {
	return fmt.Sprintf(`{"backend": {"type": "tfserving", "target": %q, "model_name": "ranker", "version": %d,
		"timeout_ms": %d, "outputs": {"scores": "scores"}}, %s}`, target, version, timeoutMS, rankerSpec)
}

func startTF(t *testing.T, m *tfservingtest.Model) *tfservingtest.Server {
	t.Helper()
	s, err := tfservingtest.Start(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

var cands = []string{"i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8"}

// The gateway turns a request into TF Serving's wire format through the
// version's feature spec, and ranks by the model's scores.
func TestTFServingThroughTheGateway(t *testing.T) {
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 200), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/tf", `{"arms": ["ranker@1"]}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	var rec recResp
	if st := call(t, "POST", a.url+"/v1/endpoints/tf/recommend", map[string]any{"user_id": "u42", "candidates": cands, "exclude": []string{"i2"}, "k": 4}, &rec); st != 200 {
		t.Fatalf("recommend: %d", st)
	}
	req := tf.LastRequest()
	if req == nil {
		t.Fatal("TF Serving received no Predict")
	}
	if spec := req.GetModelSpec(); spec.GetName() != "ranker" || spec.GetVersion().GetValue() != 1 || spec.GetSignatureName() != "serving_default" {
		t.Fatalf("model spec %v", spec)
	}
	user := req.GetInputs()["user"]
	wantUser := featurizer.HashBucket("u42", 10000)
	if user.GetDtype() != framework.DataType_DT_INT64 || len(user.GetTensorShape().GetDim()) != 1 ||
		len(user.GetTensorContent()) != 8 || int64(binary.LittleEndian.Uint64(user.GetTensorContent())) != wantUser {
		t.Fatalf("user tensor %v, want int64 [1] = %d", user, wantUser)
	}
	cs := req.GetInputs()["cands"]
	if dims := cs.GetTensorShape().GetDim(); len(dims) != 2 || dims[0].GetSize() != 1 || dims[1].GetSize() != 7 || len(cs.GetStringVal()) != 7 {
		t.Fatalf("cands tensor %v: want [1, 7] without the excluded item", cs)
	}
	// The items are the candidates ranked by the model's scores.
	want := append([]string(nil), cands...)
	want = append(want[:1], want[2:]...)
	sort.Slice(want, func(i, j int) bool {
		return tfservingtest.DefaultScore(1, want[i]) > tfservingtest.DefaultScore(1, want[j])
	})
	got := make([]string, len(rec.Items))
	for i, it := range rec.Items {
		got[i] = it.ID
	}
	if strings.Join(got, ",") != strings.Join(want[:4], ",") || rec.Arm != "ranker@1" || rec.Fallback {
		t.Fatalf("items %v from %s, want %v", got, rec.Arm, want[:4])
	}
	var mv map[string]any
	call(t, "GET", a.url+"/v1/models/ranker/versions/1", nil, &mv)
	if b := mv["backend"].(map[string]any); b["signature_name"] != "serving_default" || b["target"] != tf.Addr() {
		t.Fatalf("stored backend %v", b)
	}
}

func TestTFServingRegistrationErrors(t *testing.T) {
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable, 2: tfservingtest.StateLoading}))
	a := startApp(t, demoConfig(t, ""))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	cases := []struct {
		name, body, field, msg string
	}{
		{"target down", rankerBody(down, 1, 100), "backend.target", "unreachable"},
		{"version missing", rankerBody(tf.Addr(), 9, 100), "backend.version", "9"},
		{"version not available", rankerBody(tf.Addr(), 2, 100), "backend.version", "LOADING"},
		{"signature lacks an input", strings.Replace(rankerBody(tf.Addr(), 1, 100), `"cands":`, `"age": {"from": "features.age", "dtype": "float32", "default": 1}, "cands":`, 1), "features.inputs.age", "age"},
		{"wrong dtype", strings.Replace(rankerBody(tf.Addr(), 1, 100), `"buckets": 10000, "dtype": "int64"`, `"buckets": 10000, "dtype": "int32"`, 1), "features.inputs.user", "int"},
		{"missing output", strings.Replace(rankerBody(tf.Addr(), 1, 100), `{"scores": "scores"}`, `{"scores": "probabilities"}`, 1), "backend.outputs.scores", "probabilities"},
		{"no outputs", strings.Replace(rankerBody(tf.Addr(), 1, 100), `"outputs": {"scores": "scores"}`, `"signature_name": "serving_default"`, 1), "backend.outputs.scores", "scores"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e errResp
			st := call(t, "PUT", a.url+"/v1/models/ranker/versions/7", tc.body, &e)
			if st != 400 || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.msg) {
				t.Fatalf("got %d %+v, want 400 on %s mentioning %q", st, e.Error, tc.field, tc.msg)
			}
			if st := call(t, "GET", a.url+"/v1/models/ranker/versions/7", nil, nil); st != 404 {
				t.Fatal("a refused version was stored")
			}
		})
	}
}

// With TF Serving stopped mid-traffic or slower than the deadline, every
// request still answers within the deadline plus a margin, from the
// fallback; when TF Serving comes back, its arm serves again.
func TestTFServingFaultsFallBack(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for health checks")
	}
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	a := startApp(t, demoConfig(t, ""))
	const deadline = 150 * time.Millisecond
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, int(deadline/time.Millisecond)), nil); st != 201 {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/tf", `{"arms": ["ranker@1", "mf@1"], "fallback": "mf@1", "policy": {"type": "uniform"}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	margin := deadline + 500*time.Millisecond // generous: the race detector and a shared machine
	traffic := func(n int) (served map[string]int, fellBack int) {
		served = map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n/4; i++ {
					start := time.Now()
					var rec recResp
					st := call(t, "POST", a.url+"/v1/endpoints/tf/recommend", map[string]any{"user_id": "u1", "candidates": cands}, &rec)
					if took := time.Since(start); st != 200 || took > margin {
						t.Errorf("recommend: %d after %s", st, took)
						return
					}
					mu.Lock()
					served[rec.Arm]++
					if rec.Fallback {
						fellBack++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return served, fellBack
	}

	if served, _ := traffic(40); served["ranker@1"] == 0 {
		t.Fatalf("TF Serving arm never served while healthy: %v", served)
	}
	tf.SetFault(tfservingtest.Fault{Delay: 2 * time.Second})
	served, fellBack := traffic(40)
	if fellBack == 0 || served["ranker@1"] != 0 {
		t.Fatalf("slow backend: served %v, %d fallbacks; want every ranker@1 choice to fall back", served, fellBack)
	}
	tf.SetFault(tfservingtest.Fault{})

	tf.Stop()
	traffic(40)
	var rep reportResp
	waitUntil(t, 5*time.Second, func() bool {
		return call(t, "GET", a.url+"/readyz", nil, nil) == http.StatusServiceUnavailable
	})
	call(t, "GET", a.url+"/v1/endpoints/tf/report", nil, &rep)
	for _, arm := range rep.Arms {
		if arm.Arm == "ranker@1" && (arm.State != "unavailable" || arm.TrafficShare != 0) {
			t.Fatalf("stopped backend's arm in the report: %+v", arm)
		}
	}
	if served, _ := traffic(20); served["ranker@1"] != 0 {
		t.Fatalf("an unavailable arm was chosen: %v", served)
	}

	if err := tf.Restart(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool {
		served, _ := traffic(8)
		return served["ranker@1"] > 0
	})
	if st := call(t, "GET", a.url+"/readyz", nil, nil); st != 200 {
		t.Fatalf("readyz after recovery: %d", st)
	}
	var errs report.Report
	call(t, "GET", a.url+"/v1/endpoints/tf/report", nil, &errs)
	for _, arm := range errs.Arms {
		if arm.Arm == "ranker@1" && arm.Errors["deadline"] == 0 {
			t.Fatalf("deadline errors not counted: %v", arm.Errors)
		}
	}
}

// A new AVAILABLE version in TF Serving joins an auto_arms endpoint; a
// version that goes away is drained.
func TestTFServingAutoArms(t *testing.T) {
	m := ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable})
	tf := startTF(t, m)
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 200), nil); st != 201 {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/tf", `{"arms": ["ranker@1"], "auto_arms": {"model": "ranker", "interval": "1s"}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	tf.SetVersionState("ranker", 2, tfservingtest.StateAvailable)
	var ep registry.Endpoint
	waitUntil(t, 5*time.Second, func() bool {
		call(t, "GET", a.url+"/v1/endpoints/tf", nil, &ep)
		return ep.ArmStates["ranker@2"] == registry.Active
	})
	var mv registry.ModelVersion
	call(t, "GET", a.url+"/v1/models/ranker/versions/2", nil, &mv)
	var spec tfserving.Spec // the backend config as the driver reads it
	if raw, err := json.Marshal(mv.Backend); err != nil || json.Unmarshal(raw, &spec) != nil {
		t.Fatalf("backend of the auto-registered version: %s, %v", raw, err)
	}
	if spec.Version == nil || *spec.Version != 2 {
		t.Fatalf("auto-registered version points at TF Serving version %v, want 2", spec.Version)
	}
	tf.SetVersionState("ranker", 2, tfservingtest.StateEnd)
	waitUntil(t, 5*time.Second, func() bool {
		call(t, "GET", a.url+"/v1/endpoints/tf", nil, &ep)
		return ep.ArmStates["ranker@2"] == registry.Paused
	})
	for i := 0; i < 20; i++ {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/tf/recommend", map[string]any{"user_id": "u1", "candidates": cands}, &rec); st != 200 || rec.Arm != "ranker@1" {
			t.Fatalf("after draining: %d from %s", st, rec.Arm)
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, d, cond)
}
