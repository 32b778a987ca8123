package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The full demo config serves all three arms, nn@1 through ONNX Runtime.
func TestFullDemoConfig(t *testing.T) {
	needONNXRuntime(t)
	a := startApp(t, fullDemoConfig(t, ""))
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 3; i++ {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend",
			map[string]any{"user_id": "u" + string(rune('0'+i%10)), "k": 5}, &rec); st != 200 {
			t.Fatalf("recommend: %d %+v", st, rec)
		}
		if rec.Fallback || len(rec.Items) != 5 {
			t.Fatalf("recommend: %+v", rec)
		}
		seen[rec.Arm] = true
	}
	if !seen["nn@1"] || !seen["mf@1"] || !seen["mf@2"] {
		t.Fatalf("arms served in 200 requests: %v, want mf@1, mf@2 and nn@1", seen)
	}
}

// config-embedded.yaml, which `make run` and the tests fall back to without
// the ONNX Runtime library, is config.yaml without nn@1.
func TestEmbeddedDemoConfigMatches(t *testing.T) {
	full, err := os.ReadFile(filepath.Join(demoDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := os.ReadFile(filepath.Join(demoDir, "config-embedded.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	body := func(b []byte) string { // without the leading comment
		s := string(b)
		return s[strings.Index(s, "models:"):]
	}
	want := body(full)
	start := strings.Index(want, "  - name: nn\n")
	end := strings.Index(want, "endpoints:")
	if start < 0 || end < start {
		t.Fatal("config.yaml: no nn model before endpoints")
	}
	want = want[:start] + want[end:]
	want = strings.Replace(want, "arms: [mf@1, mf@2, nn@1]", "arms: [mf@1, mf@2]", 1)
	if got := body(emb); got != want {
		t.Errorf("config-embedded.yaml is not config.yaml without nn@1:\n--- got\n%s\n--- want\n%s", got, want)
	}
}

// Without the runtime library, registering an onnx version is a 400 that
// says how to install it, and the other arms keep serving.
func TestONNXRuntimeMissingIsA400(t *testing.T) {
	cfg := demoConfig(t, "")
	cfg.ONNXRuntime.Library = filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	a := startApp(t, cfg)
	body := `{"backend": {"type": "onnx", "path": "` + filepath.Join(demoDir, "models", "nn", "1") + `", "outputs": {"scores": "scores"}},
		"features": {"inputs": {"user": {"from": "user_id", "transform": "hash_bucket", "buckets": 1000000, "dtype": "int64"}}}}`
	var e errResp
	if st := call(t, "PUT", a.url+"/v1/models/nn/versions/9", body, &e); st != 400 || !strings.Contains(e.Error.Message, "make onnxruntime") {
		t.Fatalf("got %d %+v, want a 400 with the install hint", st, e.Error)
	}
	var rec recResp
	if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, &rec); st != 200 {
		t.Fatalf("the other arms stopped serving: %d", st)
	}
}
