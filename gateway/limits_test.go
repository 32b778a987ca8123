package gateway

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
)

// Without API keys, a listener beyond loopback is refused at start-up.
func TestRefusesNonLoopbackWithoutKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", "--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), "refusing to listen on 0.0.0.0:0") || !strings.Contains(stderr.String(), "--insecure") {
		t.Fatalf("got %v, stderr:\n%s", err, stderr.String())
	}
	// --insecure allows it.
	c, url := startBinary(t, bin, "--data-dir", t.TempDir(), "--insecure")
	_ = c
	if st := call(t, "GET", url+"/healthz", nil, nil); st != 200 {
		t.Fatalf("healthz with --insecure: %d", st)
	}
}

// Past max_concurrent in-flight requests the gateway answers 503 overloaded
// at once instead of queueing.
func TestOverloadShedsAtOnce(t *testing.T) {
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	tf.SetFault(tfservingtest.Fault{Delay: 700 * time.Millisecond})
	cfg := demoConfig(t, "")
	cfg.Limits.MaxConcurrent = 4
	a := startApp(t, cfg)
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 2000), nil); st != 201 {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/slow", `{"arms": ["ranker@1"]}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call(t, "POST", a.url+"/v1/endpoints/slow/recommend", map[string]any{"user_id": "u", "candidates": cands}, nil)
		}()
	}
	time.Sleep(200 * time.Millisecond) // the four are in flight
	start := time.Now()
	req, _ := http.NewRequest("POST", a.url+"/v1/endpoints/slow/recommend", strings.NewReader(`{"user_id": "u"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || time.Since(start) > 150*time.Millisecond {
		t.Fatalf("fifth request: %d, Retry-After %q, after %s", resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start))
	}
	wg.Wait()
}

// SIGTERM during traffic drains in-flight requests and keeps every
// acknowledged click and every served trial.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	cfgPath := demoConfigFile(t)
	cmd, url := startBinary(t, bin, "--config", cfgPath, "--data-dir", data)
	served, acked := 0, 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var rec recResp
				if st := callQuiet("POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, &rec); st != 200 {
					return
				}
				var fb fbResp
				ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
				st := callQuiet("POST", url+"/v1/feedback", ev, &fb)
				mu.Lock()
				served++
				if st == 200 && fb.Accepted == 1 {
					acked++
				}
				mu.Unlock()
				if st != 200 {
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
	_, url = startBinary(t, bin, "--config", cfgPath, "--data-dir", data)
	var rep reportResp
	call(t, "GET", url+"/v1/endpoints/home/report", nil, &rep)
	var trials uint64
	var successes float64
	for _, a := range rep.Arms {
		trials += a.Trials
		successes += a.Successes
	}
	if successes != float64(acked) || trials < uint64(served) {
		t.Fatalf("after SIGTERM: %d trials %g successes; served %d (with a click sent each), acknowledged %d", trials, successes, served, acked)
	}
}
