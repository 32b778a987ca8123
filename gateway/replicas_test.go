package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/registry"
)

// replicas starts n gateways in this process sharing the Redis at url, each
// with its own data dir (its write-ahead log and prediction log).
func replicas(t *testing.T, url string, n int) []*testApp {
	t.Helper()
	out := make([]*testApp, n)
	for i := range out {
		cfg := demoConfig(t, "")
		cfg.RedisURL = url
		cfg.Report.Interval = time.Second
		out[i] = startApp(t, cfg)
	}
	return out
}

type tally struct {
	mu       sync.Mutex
	served   map[string]int
	clicked  map[string]int
	failures atomic.Int64
}

// drive serves n recommends spread over the replicas; every third
// prediction is clicked on another replica than the one that served it, and
// the same click is sent again to a third replica (a duplicate).
func drive(t *testing.T, reps []*testApp, n int, tl *tally) {
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 3 {
				var rec recResp
				if st := call(t, "POST", reps[i%len(reps)].url+"/v1/endpoints/home/recommend", map[string]any{"user_id": fmt.Sprint("u", i%400)}, &rec); st != 200 {
					tl.failures.Add(1)
					continue
				}
				tl.mu.Lock()
				tl.served[rec.Arm]++
				tl.mu.Unlock()
				if i%3 != 0 {
					continue
				}
				ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
				var fb fbResp
				if st := call(t, "POST", reps[(i+1)%len(reps)].url+"/v1/feedback", ev, &fb); st != 200 || fb.Accepted != 1 {
					tl.failures.Add(1)
					continue
				}
				tl.mu.Lock()
				tl.clicked[rec.Arm]++
				tl.mu.Unlock()
				var dup fbResp
				if st := call(t, "POST", reps[(i+2)%len(reps)].url+"/v1/feedback", ev, &dup); st != 200 || dup.Accepted+dup.Duplicates != 1 {
					tl.failures.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
}

// exact waits until every replica's report shows exactly what was served
// and clicked.
func exact(t *testing.T, reps []*testApp, tl *tally, within time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(within)
	for {
		ok := true
		for _, r := range reps {
			var rep reportResp
			call(t, "GET", r.url+"/v1/endpoints/home/report", nil, &rep)
			for _, arm := range []string{"mf@1", "mf@2"} {
				tr, su := rep.arm(arm)
				if tr != uint64(tl.served[arm]) || su != float64(tl.clicked[arm]) {
					ok = false
					last = fmt.Sprintf("%s: %s has %d trials %g successes, want %d and %d", r.url, arm, tr, su, tl.served[arm], tl.clicked[arm])
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts not exact after %s: %s", within, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReplicasCountExactly(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways})
	reps := replicas(t, rs.URL(), 3)
	tl := &tally{served: map[string]int{}, clicked: map[string]int{}}
	drive(t, reps, 300, tl)
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed", n)
	}
	exact(t, reps, tl, 3*time.Second)

	// A pause on one replica is obeyed by every replica within a second.
	start := time.Now()
	if st := call(t, "PATCH", reps[0].url+"/v1/endpoints/home/arms/mf@2", `{"state": "paused"}`, nil); st != 200 {
		t.Fatalf("pause: %d", st)
	}
	for _, r := range reps[1:] {
		waitUntil(t, time.Second, func() bool {
			var ep registry.Endpoint
			call(t, "GET", r.url+"/v1/endpoints/home", nil, &ep)
			return ep.ArmStates["mf@2"] == registry.Paused
		})
	}
	took := time.Since(start)
	for i := 0; i < 30; i++ {
		var rec recResp
		call(t, "POST", reps[i%3].url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, &rec)
		if rec.Arm == "mf@2" {
			t.Fatal("a replica served the paused arm")
		}
	}
	t.Logf("the pause reached every replica in %s", took)

	// /metrics shows the shared store's state and backlog.
	resp, err := http.Get(reps[0].url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, want := range []string{"modelgate_store_up 1", "modelgate_store_wal_batches 0", "modelgate_store_wal_bytes 0"} {
		if !bytes.Contains(b.Bytes(), []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Redis is killed mid-traffic and restarted from its AOF: no request fails,
// feedback acknowledged during the outage is counted once, and the counts
// end exact.
func TestReplicasSurviveRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts Redis")
	}
	rs := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways})
	reps := replicas(t, rs.URL(), 3)
	tl := &tally{served: map[string]int{}, clicked: map[string]int{}}
	drive(t, reps, 90, tl)
	rs.Stop()
	drive(t, reps, 150, tl) // during the outage
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed while Redis was down", n)
	}
	rs.Restart()
	drive(t, reps, 90, tl)
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed", n)
	}
	exact(t, reps, tl, 10*time.Second)
}

// The Sentinel-managed master is killed mid-traffic and its replica
// promoted: no request fails meanwhile (the write-ahead log carries the
// feedback, the cached posteriors the recommends), every replica writes to
// the new master once the sentinels name it, and the counts end exact.
func TestReplicasSurviveSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a Redis master and waits for its replica's promotion")
	}
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{Server: redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways}})
	reps := replicas(t, sn.URL(), 2)
	tl := &tally{served: map[string]int{}, clicked: map[string]int{}}
	drive(t, reps, 90, tl)
	sn.Master.Stop()        // SIGKILL
	drive(t, reps, 150, tl) // while the sentinels agree the master is down and fail over
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed during the failover", n)
	}
	waitUntil(t, 20*time.Second, func() bool { return sn.MasterAddr() == sn.Replica.Addr() })
	drive(t, reps, 90, tl)
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed", n)
	}
	exact(t, reps, tl, 15*time.Second)
	for _, r := range reps {
		waitUntil(t, 10*time.Second, func() bool {
			var ready struct {
				Store struct {
					Healthy    bool `json:"healthy"`
					WALBatches int  `json:"wal_batches"`
				} `json:"store"`
			}
			st := callQuiet("GET", r.url+"/readyz", nil, &ready)
			return st == 200 && ready.Store.Healthy && ready.Store.WALBatches == 0
		})
	}
}

// The master serving the endpoint's keys in a Redis Cluster is killed
// mid-traffic and its replica promoted: no request fails meanwhile, every
// replica writes to the promoted master once the cluster names it, the
// counts end exact, and a pause made after the failover reaches every
// replica.
func TestReplicasSurviveClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a Redis Cluster master and waits for its replica's promotion")
	}
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	reps := replicas(t, c.URL(), 2)
	tl := &tally{served: map[string]int{}, clicked: map[string]int{}}
	drive(t, reps, 90, tl)
	victim := c.MasterOf("modelgate:{home}:counters:trials")
	if victim == nil {
		t.Fatal("no master serves the endpoint's keys")
	}
	victim.Stop()           // SIGKILL
	drive(t, reps, 150, tl) // while the cluster takes the master for failed and promotes its replica
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed during the failover", n)
	}
	waitUntil(t, 30*time.Second, func() bool {
		m := c.MasterOf("modelgate:{home}:counters:trials")
		return m != nil && m != victim
	})
	drive(t, reps, 90, tl)
	if n := tl.failures.Load(); n > 0 {
		t.Fatalf("%d calls failed", n)
	}
	exact(t, reps, tl, 30*time.Second)
	if st := call(t, "PATCH", reps[0].url+"/v1/endpoints/home/arms/mf@2", `{"state": "paused"}`, nil); st != 200 {
		t.Fatalf("pause after the failover: %d", st)
	}
	waitUntil(t, 5*time.Second, func() bool {
		var ep registry.Endpoint
		call(t, "GET", reps[1].url+"/v1/endpoints/home", nil, &ep)
		return ep.ArmStates["mf@2"] == registry.Paused
	})
}

// History is one series across replicas: every point time appears once,
// and its cumulative expected regret never decreases although the replicas
// take turns writing it.
func TestReplicasWriteOneHistory(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	reps := replicas(t, rs.URL(), 2)
	tl := &tally{served: map[string]int{}, clicked: map[string]int{}}
	drive(t, reps, 30, tl)
	var h historyResp
	waitUntil(t, 6*time.Second, func() bool {
		call(t, "GET", reps[1].url+"/v1/endpoints/home/report/history", nil, &h)
		return len(h.Points) >= 3
	})
	seen := map[string]bool{}
	for i, p := range h.Points {
		if seen[p.T] {
			t.Fatalf("two points at %s", p.T)
		}
		seen[p.T] = true
		if i > 0 && p.RegretExpectedCumulative < h.Points[i-1].RegretExpectedCumulative {
			t.Fatalf("regret %v at %s after %v", p.RegretExpectedCumulative, p.T, h.Points[i-1].RegretExpectedCumulative)
		}
	}
}

// A replica killed with SIGKILL mid-traffic loses no acknowledged click and
// at most the trials of its last flush interval.
func TestReplicaKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	rs := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways})
	bin := buildBinary(t)
	cfgPath := demoConfigFile(t)
	cmd, url := startBinary(t, bin, "--config", cfgPath, "--data-dir", t.TempDir(), "--redis-url", rs.URL())
	other := replicas(t, rs.URL(), 1)[0]

	var served, acked atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var rec recResp
			if st := callQuiet("POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": fmt.Sprint("u", i%400)}, &rec); st != 200 {
				return // killed
			}
			served.Add(1)
			if i%2 == 0 {
				var fb fbResp
				ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
				if st := callQuiet("POST", url+"/v1/feedback", ev, &fb); st == 200 && fb.Accepted == 1 {
					acked.Add(1)
				}
			}
		}
	}()
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	_ = cmd.Wait()

	var trials uint64
	var successes float64
	waitUntil(t, 3*time.Second, func() bool {
		var rep reportResp
		call(t, "GET", other.url+"/v1/endpoints/home/report", nil, &rep)
		trials, successes = 0, 0
		for _, a := range rep.Arms {
			trials += a.Trials
			successes += a.Successes
		}
		return successes >= float64(acked.Load())
	})
	// Every acknowledged click counts. The one feedback call in flight when
	// the replica died may have been applied without its answer arriving.
	if successes < float64(acked.Load()) || successes > float64(acked.Load()+1) {
		t.Fatalf("%g successes counted, %d clicks acknowledged (one unacknowledged may count)", successes, acked.Load())
	}
	lost := served.Load() - int64(trials)
	if lost < 0 || lost > 60 {
		t.Fatalf("served %d, counted %d trials: lost %d", served.Load(), trials, lost)
	}
	t.Logf("served %d, acknowledged %d clicks; after kill -9: %d trials (%d lost), %g successes", served.Load(), acked.Load(), trials, lost, successes)
}

// callQuiet is call without failing the test on transport errors (the
// server may be gone); it returns 0 then.
func callQuiet(method, url string, body any, out any) int {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(method, url, bytes.NewReader(raw))
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return 0
	}
	return resp.StatusCode
}

// The doubly robust estimate reads each segment's day sums, which replicas
// share through Redis as they share the endpoint-wide minutes: once every
// replica has read the others' sums, each one's report (for the endpoint
// and for one segment) gives the same n, snips and dr.
func TestReplicasShareDoublyRobust(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	reps := replicas(t, rs.URL(), 2)
	if st := call(t, "PUT", reps[0].url+"/v1/endpoints/shop", `{"arms": ["mf@1", "mf@2"], "policy": {"segment_by": ["surface"], "min_share": 0.1}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	waitUntil(t, 5*time.Second, func() bool {
		return call(t, "GET", reps[1].url+"/v1/endpoints/shop", nil, nil) == 200
	})
	const n = 200
	for i := 0; i < n; i++ {
		var rec recResp
		body := map[string]any{"user_id": fmt.Sprint("u", i), "context": map[string]string{"surface": []string{"home", "music"}[i%2]}}
		if st := call(t, "POST", reps[i%2].url+"/v1/endpoints/shop/recommend", body, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if i%4 == 0 || (rec.Arm == "mf@2" && i%3 == 0) {
			ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
			call(t, "POST", reps[(i+1)%2].url+"/v1/feedback", ev, nil)
		}
	}
	for _, q := range []string{"", "?segment=surface%3Dmusic"} {
		want := n
		if q != "" {
			want = n / 2
		}
		var last string
		same := func() bool {
			var reports [2]reportResp
			for i, r := range reps {
				call(t, "GET", r.url+"/v1/endpoints/shop/report"+q, nil, &reports[i])
			}
			for j := range reports[0].Arms {
				a, b := reports[0].Arms[j].OffPolicy, reports[1].Arms[j].OffPolicy
				if a == nil || b == nil || a.N != want || b.N != want || abs(a.DR-b.DR) > 1e-9 || abs(a.SNIPS-b.SNIPS) > 1e-9 ||
					abs(a.DRCI95[0]-b.DRCI95[0]) > 1e-9 || abs(a.DRCI95[1]-b.DRCI95[1]) > 1e-9 || !(a.DRCI95[0] <= a.DR && a.DR <= a.DRCI95[1]) {
					last = fmt.Sprintf("%+v and %+v", a, b)
					return false
				}
			}
			return true
		}
		deadline := time.Now().Add(10 * time.Second)
		for !same() {
			if time.Now().After(deadline) {
				t.Fatalf("report%s differs between the replicas: %s", q, last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
