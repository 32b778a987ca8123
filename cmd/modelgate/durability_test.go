package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds the modelgate binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "modelgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

var listenRE = regexp.MustCompile(`HTTP on (https?://[0-9.:]+), gRPC on ([0-9.:]+)`)

// startBinary runs `modelgate serve` on free ports and returns its base URL.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	args = append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				lines <- m[1]
			}
		}
		close(lines)
	}()
	select {
	case url, ok := <-lines:
		if !ok {
			t.Fatal("modelgate serve exited before listening")
		}
		return cmd, url
	case <-time.After(20 * time.Second):
		t.Fatal("modelgate serve did not start in 20 s")
	}
	return nil, ""
}

// The built binary is killed with SIGKILL after acknowledged feedback and
// registry changes; a restart on the same data dir with the same config has
// every acknowledged click, the served trials, the new version and the pause.
func TestDurabilityAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	cfg := demoConfigFile(t)
	cmd, url := startBinary(t, bin, "--config", cfg, "--data-dir", data)

	const n = 40
	clicks := 0
	for i := 0; i < n; i++ {
		var rec recResp
		if st := call(t, "POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u7"}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if i%3 == 0 {
			var fb fbResp
			ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
			if st := call(t, "POST", url+"/v1/feedback", ev, &fb); st != 200 || fb.Accepted != 1 {
				t.Fatalf("feedback: %d %+v", st, fb)
			}
			clicks++
		}
	}
	body := `{"backend": {"type": "embedded", "path": "` + filepath.Join(demoDir, "models", "mf", "2") + `"}, "metadata": {"note": "copy"}}`
	if st := call(t, "PUT", url+"/v1/models/mf/versions/3", body, nil); st != http.StatusCreated {
		t.Fatalf("register mf@3: %d", st)
	}
	if st := call(t, "POST", url+"/v1/endpoints/home/arms", `{"arm": "mf@3"}`, nil); st != http.StatusCreated {
		t.Fatalf("add arm: %d", st)
	}
	if st := call(t, "PATCH", url+"/v1/endpoints/home/arms/mf@1", `{"state": "paused"}`, nil); st != 200 {
		t.Fatalf("pause: %d", st)
	}
	time.Sleep(1100 * time.Millisecond) // trials reach disk within 1 s
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	_, url = startBinary(t, bin, "--config", cfg, "--data-dir", data)
	var rep reportResp
	if st := call(t, "GET", url+"/v1/endpoints/home/report", nil, &rep); st != 200 {
		t.Fatalf("report after restart: %d", st)
	}
	var trials, successes uint64
	states := map[string]string{}
	for _, a := range rep.Arms {
		trials += a.Trials
		successes += a.Successes
		states[a.Arm] = a.State
	}
	if trials != n || successes != uint64(clicks) {
		t.Fatalf("after kill -9: %d trials %d successes, want %d and %d", trials, successes, n, clicks)
	}
	if states["mf@1"] != "paused" || states["mf@3"] != "active" {
		t.Fatalf("arm states after restart with the same config: %v; the pause and the added arm must survive", states)
	}
	var mv struct {
		Metadata map[string]any `json:"metadata"`
	}
	if st := call(t, "GET", url+"/v1/models/mf/versions/3", nil, &mv); st != 200 || mv.Metadata["note"] != "copy" {
		t.Fatalf("mf@3 after restart: %d %+v", st, mv)
	}
	// A paused arm is never chosen.
	for i := 0; i < 30; i++ {
		var rec recResp
		call(t, "POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u8"}, &rec)
		if rec.Arm == "mf@1" {
			t.Fatal("the paused arm mf@1 served a request")
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("unexpected listen URL %s", url)
	}
}
