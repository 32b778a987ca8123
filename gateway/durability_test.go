package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/acklog"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

// buildBinary builds the modelgate binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "modelgate")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/modelgate")
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
	return startUnder(t, nil, bin, args...)
}

// startUnder is startBinary with the command line run by under (a tracer
// and its flags) when under is not empty. The tracer and modelgate then run
// in a process group of their own, all killed when the test ends.
func startUnder(t *testing.T, under []string, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	args = append([]string{bin, "serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, args...)
	args = append(append([]string(nil), under...), args...)
	cmd := exec.Command(args[0], args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if len(under) > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if len(under) > 0 {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
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
	var trials uint64
	var successes float64
	states := map[string]string{}
	for _, a := range rep.Arms {
		trials += a.Trials
		successes += a.Successes
		states[a.Arm] = a.State
	}
	if trials != n || successes != float64(clicks) {
		t.Fatalf("after kill -9: %d trials %g successes, want %d and %d", trials, successes, n, clicks)
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

// A kill -9 cannot tell an fsynced acknowledgement from one left in the
// page cache, which survives the process: the test above would pass against
// a store that never fsyncs. Here the store reports each fsync, and every
// 200 of POST /v1/feedback must come after an fsync holding its events: in
// the embedded store, and in a replica's write-ahead log while Redis is down.
func TestFeedbackAcknowledgedAfterFsync(t *testing.T) {
	t.Run("embedded store", func(t *testing.T) {
		var cur atomic.Pointer[acklog.Log]
		dir := t.TempDir()
		db, err := store.OpenWith(dir, store.Options{OnSync: func(c store.Commit) {
			if l := cur.Load(); l != nil {
				l.Synced(c.Feedback) // commits of trials alone hold 0
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		a := startAppOn(t, demoConfig(t, ""), dir, embeddedStore(db))
		feedbackFollowsSync(t, a.url, recommendations(t, a.url, 60), &cur, func(events int) int { return events })
	})
	t.Run("redis write-ahead log", func(t *testing.T) {
		rs := redistest.Start(t, redistest.Options{})
		var cur atomic.Pointer[acklog.Log]
		dir := t.TempDir()
		cfg := demoConfig(t, "")
		cfg.RedisURL = rs.URL()
		redis.SetLogger(RedisLogger{}) // as serve does at start-up
		db, err := redisstore.Open(context.Background(), rs.URL(), redisstore.Options{
			WALDir: filepath.Join(dir, "redis-wal"), OpTimeout: cfg.Redis.Timeout,
			OnWALSync: func(records int) {
				if l := cur.Load(); l != nil {
					l.Synced(records)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		a := startAppOn(t, cfg, dir, redisStore(db))
		recs := recommendations(t, a.url, 60)
		// The trials of those recommendations reach Redis, so that what the
		// log gets from here on is feedback only, a record per call.
		waitUntil(t, 5*time.Second, func() bool {
			es, err := db.LoadCounters(context.Background())
			var n uint64
			for _, e := range es {
				if e.Key.Segment == "all" {
					n += e.Trials
				}
			}
			return err == nil && n == uint64(len(recs))
		})
		rs.Stop()
		feedbackFollowsSync(t, a.url, recs, &cur, func(int) int { return 1 })
		if n, _ := db.Backlog(); n == 0 {
			t.Fatal("no batch in the write-ahead log: the feedback did not go there")
		}
	})
}

// startAppOn is startApp on a store the test opened in dir; the gateway
// closes it.
func startAppOn(t *testing.T, cfg *config.Config, dir string, db openedStore) *testApp {
	t.Helper()
	return startGateway(t, cfg, Options{DataDir: dir}, db)
}

// recommendations serves n recommendations of the demo endpoint.
func recommendations(t *testing.T, url string, n int) []recResp {
	t.Helper()
	out := make([]recResp, n)
	for i := range out {
		if st := call(t, "POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": fmt.Sprint("u", i)}, &out[i]); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
	}
	return out
}

// feedbackFollowsSync clicks recs through POST /v1/feedback while cur
// records the store's fsyncs: first one call at a time (each 200 must follow
// an fsync of its own, holding exactly its events), then from several
// clients at once (group-committed). weight is what one call of that many
// events adds to an fsync: events in the embedded store, one record in the
// write-ahead log.
func feedbackFollowsSync(t *testing.T, url string, recs []recResp, cur *atomic.Pointer[acklog.Log], weight func(events int) int) {
	t.Helper()
	clicks := func(recs []recResp) map[string]any {
		var evs []map[string]string
		for _, r := range recs {
			evs = append(evs, map[string]string{"prediction_id": r.PredictionID, "type": "click", "item_id": r.Items[0].ID})
		}
		return map[string]any{"events": evs}
	}
	send := func(log *acklog.Log, id string, recs []recResp) error {
		log.Begin(id, weight(len(recs)))
		var fb fbResp
		if st := callQuiet("POST", url+"/v1/feedback", clicks(recs), &fb); st != 200 || fb.Accepted != len(recs) {
			return fmt.Errorf("feedback %s: %d %+v", id, st, fb)
		}
		log.Ack(id)
		return nil
	}

	var one acklog.Log
	cur.Store(&one)
	for i := 0; i < 10; i++ {
		if err := send(&one, fmt.Sprint("single ", i), recs[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(&one, "three events", recs[10:13]); err != nil {
		t.Fatal(err)
	}
	cur.Store(nil)
	if err := one.Check(true); err != nil {
		t.Fatalf("one call at a time: %v", err)
	}

	var many acklog.Log
	cur.Store(&many)
	const clients, each = 6, 7
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := recs[13+c*each+i]
				if err := send(&many, fmt.Sprintf("client %d call %d", c, i), []recResp{r}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	cur.Store(nil)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := many.Check(false); err != nil {
		t.Fatalf("concurrent calls: %v", err)
	}
	if _, w := many.Totals(); w != clients*each*weight(1) {
		t.Fatalf("fsyncs held %d, want %d", w, clients*each*weight(1))
	}
}

// The built binary under strace shows the order itself, syscall by
// syscall: between reading a POST /v1/feedback and writing its 200, the
// process writes the store's file and then fsyncs it — the embedded store's
// bbolt file, or the replica's write-ahead log while Redis is down. No hook
// is involved: a binary that skipped the fsync or answered before it fails.
func TestFeedbackFsyncedBeforeResponse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and traces the binary")
	}
	strace := testenv.LookPath(t, "Debian: apt-get install strace; .ci/run installs it", "strace")
	if out, err := exec.Command(strace, "-f", "-o", os.DevNull, "true").CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "strace cannot trace here: %v: %s", err, out)
	}
	bin := buildBinary(t)
	cases := []struct {
		name  string
		store *regexp.Regexp // the file the events must be fsynced to
		redis bool
	}{
		{"embedded store", regexp.MustCompile(`/modelgate\.db$`), false},
		{"redis write-ahead log", regexp.MustCompile(`/redis-wal/wal-[0-9a-f]+\.log$`), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--config", demoConfigFile(t), "--data-dir", t.TempDir()}
			var rs *redistest.Server
			if tc.redis {
				rs = redistest.Start(t, redistest.Options{})
				args = append(args, "--redis-url", rs.URL())
			}
			// strace -f -y: a line per call, named files and sockets, in the
			// order the calls happened where one caused the other.
			out := filepath.Join(t.TempDir(), "trace")
			cmd, url := startUnder(t, []string{strace, "-f", "-qq", "-y", "-s", "32", "-o", out,
				"-e", "trace=read,write,pwrite64,fsync,fdatasync", "-e", "signal=none"}, bin, args...)
			recs := recommendations(t, url, 10)
			if rs != nil {
				rs.Stop()
			}
			for i, r := range recs {
				ev := map[string]any{"events": []map[string]string{{"prediction_id": r.PredictionID, "type": "click", "item_id": r.Items[0].ID}}}
				var fb fbResp
				if st := call(t, "POST", url+"/v1/feedback", ev, &fb); st != 200 || fb.Accepted != 1 {
					t.Fatalf("feedback %d: %d %+v", i, st, fb)
				}
			}
			// Stop modelgate, strace's child, so that every call it made is
			// in the trace (a SIGKILL could cut the last answer's line short);
			// strace then writes out the trace and exits.
			kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
			pid, perr := strconv.Atoi(strings.TrimSpace(string(kids)))
			if err != nil || perr != nil {
				t.Fatalf("modelgate's pid under strace: %q, %v", kids, err)
			}
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			trace, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			n, err := checkFsyncBeforeAck(trace, tc.store)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(recs) {
				t.Fatalf("the trace shows %d answered feedback calls, want %d", n, len(recs))
			}
		})
	}
}

var (
	straceLine = regexp.MustCompile(`^(\d+) +(.*)$`)
	// The start of a request for POST /v1/feedback. On a kept-alive
	// connection net/http reads the first byte by itself (its background
	// read), then the rest.
	feedbackRequest = regexp.MustCompile(`^P?OST /v1/feedback `)
	// name(fd<path>[, "string"...]...) = result
	straceCall = regexp.MustCompile(`^(\w+)\(\d+<([^>]*)>(?:, "((?:[^"\\]|\\.)*)")?.*\) += (-?\d+)`)
)

// checkFsyncBeforeAck reads a trace of strace -f -y and checks every 200
// answered to a POST /v1/feedback: between reading the request and
// writing the answer on that socket, the process wrote to a file matching
// store and, after that write, fsynced such a file. It returns how many
// answers it checked.
func checkFsyncBeforeAck(trace []byte, store *regexp.Regexp) (int, error) {
	type window struct {
		line          int
		wrote, synced bool
	}
	open := map[string]*window{} // by socket
	unfinished := map[string]string{}
	checked := 0
	for i, raw := range strings.Split(string(trace), "\n") {
		m := straceLine.FindStringSubmatch(raw)
		if m == nil {
			continue
		}
		pid, text := m[1], m[2]
		// A call interrupted by another thread's is printed in two parts.
		if head, ok := strings.CutSuffix(text, " <unfinished ...>"); ok {
			unfinished[pid] = head
			continue
		}
		if strings.HasPrefix(text, "<... ") {
			_, tail, ok := strings.Cut(text, " resumed>")
			if !ok {
				continue
			}
			text = unfinished[pid] + tail
			delete(unfinished, pid)
		}
		c := straceCall.FindStringSubmatch(text)
		if c == nil {
			continue
		}
		name, path, str := c[1], c[2], c[3]
		ret, _ := strconv.Atoi(c[4])
		switch {
		case name == "read" && strings.HasPrefix(path, "socket:") && feedbackRequest.MatchString(str) && ret > 0:
			open[path] = &window{line: i + 1}
		case (name == "write" || name == "pwrite64") && store.MatchString(path) && ret > 0:
			for _, w := range open {
				w.wrote = true
			}
		case (name == "fsync" || name == "fdatasync") && store.MatchString(path) && ret == 0:
			for _, w := range open {
				w.synced = w.synced || w.wrote
			}
		case name == "write" && strings.HasPrefix(path, "socket:") && strings.HasPrefix(str, "HTTP/1.1 200"):
			w := open[path]
			if w == nil {
				continue
			}
			if !w.wrote || !w.synced {
				return checked, fmt.Errorf("trace line %d: the feedback request read at line %d was answered 200 with the store's file written %v and fsynced after that %v", i+1, w.line, w.wrote, w.synced)
			}
			delete(open, path)
			checked++
		}
	}
	return checked, nil
}

// checkFsyncBeforeAck on hand-written traces: it finds a missing fsync, an
// fsync before the write, an answer before the fsync, and reads calls
// split by another thread's.
func TestCheckFsyncBeforeAck(t *testing.T) {
	const (
		req   = `7 read(12<socket:[9]>, "POST /v1/feedback HTTP/1.1\r\nHost"..., 4096) = 310`
		data  = `8 pwrite64(5</d/modelgate.db>, "\2\0\0"..., 4096, 8192) = 4096`
		sync  = `8 fdatasync(5</d/modelgate.db>) = 0`
		other = `8 fdatasync(6</d/predictions.jsonl>) = 0`
		resp  = `7 write(12<socket:[9]>, "HTTP/1.1 200 OK\r\nContent-Type: a"..., 166) = 166`
	)
	db := regexp.MustCompile(`/modelgate\.db$`)
	cases := []struct {
		name    string
		lines   []string
		want    int
		wantErr bool
	}{
		{"written, synced, answered", []string{req, data, sync, resp}, 1, false},
		{"twice on one connection", []string{req, data, sync, resp,
			`7 read(12<socket:[9]>, "P", 1) = 1`, `7 read(12<socket:[9]>, "OST /v1/feedback HTTP/1.1\r\nHost:"..., 4095) = 311`,
			data, sync, resp}, 2, false},
		{"split calls", []string{
			`7 read(12<socket:[9]>,  <unfinished ...>`,
			`8 fdatasync(5</d/modelgate.db> <unfinished ...>`,
			`7 <... read resumed>"POST /v1/feedback HTTP/1.1\r\nHost"..., 4096) = 310`,
			`8 <... fdatasync resumed>) = 0`,
			data, sync, resp}, 1, false},
		{"no fsync", []string{req, data, resp}, 0, true},
		{"fsync of another file", []string{req, data, other, resp}, 0, true},
		{"fsync before the write", []string{req, sync, data, resp}, 0, true},
		{"answered before the fsync", []string{req, data, resp, sync}, 0, true},
		{"failed fsync", []string{req, data, `8 fdatasync(5</d/modelgate.db>) = -1 EIO (Input/output error)`, resp}, 0, true},
		{"no feedback call", []string{data, sync}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := checkFsyncBeforeAck([]byte(strings.Join(tc.lines, "\n")), db)
			if (err != nil) != tc.wantErr || (!tc.wantErr && n != tc.want) {
				t.Fatalf("checkFsyncBeforeAck = %d, %v; want %d, error %v", n, err, tc.want, tc.wantErr)
			}
		})
	}
}
