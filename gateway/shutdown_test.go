package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/offpolicy"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/store"
)

// Every goroutine the gateway starts — background loops, TF Serving health
// polls, the guardrail and gauge loops, the admin socket, the store's own —
// is joined or closed at shutdown: after a run with traffic on HTTP, gRPC,
// a TF Serving arm and the admin socket, none is left.
func TestShutdownJoinsEveryGoroutine(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	for _, tc := range []struct{ name, redisURL string }{
		{"embedded", ""},
		{"redis", rs.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			cfg := demoConfig(t, "")
			cfg.RedisURL = tc.redisURL
			dir := t.TempDir()
			g, err := New(context.Background(), cfg, Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", PprofAddr: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()

			client := &http.Client{Transport: &http.Transport{}}
			send := func(method, path, body string) int {
				req, _ := http.NewRequest(method, g.URL()+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			if st := send("PUT", "/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 500)); st != 201 && st != 200 {
				t.Fatalf("register the TF Serving arm: %d", st)
			}
			if st := send("PUT", "/v1/endpoints/tf", `{"arms": ["ranker@1"], "policy": {"guardrails": {"max_error_rate": 0.5, "window": "10s", "min_requests": 5}}}`); st != 201 && st != 200 {
				t.Fatalf("endpoint: %d", st)
			}
			for _, ep := range []string{"home", "tf"} {
				if st := send("POST", "/v1/endpoints/"+ep+"/recommend", `{"user_id": "u1", "candidates": ["i1", "i2", "i3"], "k": 2}`); st != 200 {
					t.Fatalf("recommend %s: %d", ep, st)
				}
			}
			if st := send("GET", "/metrics", ""); st != 200 {
				t.Fatalf("metrics: %d", st)
			}
			conn, err := grpc.NewClient(g.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pb.NewGatewayClient(conn).Recommend(context.Background(), &pb.RecommendRequest{Endpoint: "home", UserId: "u2"}); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			if tc.redisURL == "" {
				if resp, err := adminCall(filepath.Join(dir, AdminSocketName), api.AdminRequest{Op: api.AdminListKeys}); err != nil || resp.Error != nil {
					t.Fatalf("keys list over the admin socket: %v %+v", err, resp.Error)
				}
			}

			// Shut down as serve does on SIGTERM.
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			client.CloseIdleConnections()
			goleak.VerifyNone(t, before)
		})
	}
}

// A guardrail trip in the running gateway pauses the arm through the loop
// that the app runs (not a goroutine of its own), audited as guardrail.
func TestGuardrailPausesThroughTheAppLoop(t *testing.T) {
	tf := startTF(t, ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 500), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/g", `{"arms": ["ranker@1", "mf@1"], "fallback": "mf@1",
		"policy": {"type": "uniform", "guardrails": {"max_error_rate": 0.5, "window": "10s", "min_requests": 5}}}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	tf.SetFault(tfservingtest.Fault{Fail: codes.Internal})
	paused := func() bool {
		ep, _ := a.reg.Endpoint("g")
		return ep.ArmStates["ranker@1"] == "paused"
	}
	for i := 0; i < 200 && !paused(); i++ {
		call(t, "POST", a.url+"/v1/endpoints/g/recommend", map[string]any{"user_id": "u", "candidates": cands}, nil)
	}
	waitUntil(t, 10*time.Second, paused)
	var e *audit.Entry
	waitUntil(t, 10*time.Second, func() bool { // the entry follows the change
		entries, err := auditLogOf(a.Gateway)
		if err != nil {
			t.Fatal(err)
		}
		e = findAudit(entries, "pause_arm", "g/ranker@1")
		return e != nil
	})
	if e.Actor != "guardrail" {
		t.Fatalf("audit of the pause: %+v", e)
	}
}

// adminCall sends one request to the admin socket at path, as
// `modelgate keys` does.
func adminCall(path string, req api.AdminRequest) (api.AdminResponse, error) {
	var resp api.AdminResponse
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return resp, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return resp, err
	}
	err = json.NewDecoder(conn).Decode(&resp)
	return resp, err
}

// findAudit is the newest successful entry of action on target.
func findAudit(entries []audit.Entry, action, target string) *audit.Entry {
	for i := range entries {
		if entries[i].Action == action && entries[i].Target == target && entries[i].Result == "ok" {
			return &entries[i]
		}
	}
	return nil
}

// auditLogOf reads g's audit log from its store, newest first.
func auditLogOf(g *Gateway) ([]audit.Entry, error) {
	return audit.New(g.db, nil).List(context.Background(), 100)
}

// A start that fails halfway — the config's seeding, after the store, the
// telemetry and the TF Serving pool are up — leaves no goroutine behind and
// the data dir free: the next start on it succeeds at once.
func TestFailedStartReleasesEverything(t *testing.T) {
	for _, tc := range []struct{ name, fault string }{
		{"seeding fails", `"arms_typo": 1, "arms"`},
		{"listener taken", `"arms"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			dir := t.TempDir()
			bad := demoConfig(t, "")
			bad.Endpoints[0].Body = []byte(strings.Replace(string(bad.Endpoints[0].Body), `"arms"`, tc.fault, 1))
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			grpcAddr := "127.0.0.1:0"
			if tc.name == "listener taken" {
				grpcAddr = taken.Addr().String()
			}
			g, err := New(context.Background(), bad, Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				HTTPAddr: "127.0.0.1:0", GRPCAddr: grpcAddr})
			taken.Close()
			if err == nil {
				g.Close()
				t.Fatal("New succeeded")
			}
			goleak.VerifyNone(t, before)
			g, err = newTestGateway(demoConfig(t, ""), dir, nil)
			if err != nil {
				t.Fatalf("the data dir after a failed start: %v", err)
			}
			g.Close()
		})
	}
}

// hangingStore is a store whose writes, once hang is set, wait until their
// context ends: a store that stopped answering.
type hangingStore struct {
	stateStore
	hang atomic.Bool
}

func (s *hangingStore) wait(ctx context.Context) error {
	if s.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (s *hangingStore) AddTrials(ctx context.Context, deltas map[counters.Key]uint64) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.stateStore.AddTrials(ctx, deltas)
}

func (s *hangingStore) ApplyFeedback(ctx context.Context, ops []store.FeedbackOp, pending map[counters.Key]uint64) ([]store.FeedbackResult, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.stateStore.ApplyFeedback(ctx, ops, pending)
}

func (s *hangingStore) PutOffPolicy(ctx context.Context, buckets map[offpolicy.Key]offpolicy.Minute) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.stateStore.PutOffPolicy(ctx, buckets)
}

func (s *hangingStore) PutDiscounted(ctx context.Context, entries []counters.DiscEntry) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.stateStore.PutDiscounted(ctx, entries)
}

func (s *hangingStore) AddHistoryBatch(ctx context.Context, recs []store.Record) (int, error) {
	if err := s.wait(ctx); err != nil {
		return 0, err
	}
	return s.stateStore.AddHistoryBatch(ctx, recs)
}

func (s *hangingStore) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.stateStore.TouchKeys(ctx, used)
}

// shutDownWithin cancels the context of Run, whose result done carries, and
// fails the test unless Run returns without an error within timeout (the
// limits.shutdown_timeout) and margin.
func shutDownWithin(t *testing.T, cancel context.CancelFunc, done <-chan error, timeout, margin time.Duration) {
	t.Helper()
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took > timeout+margin {
		t.Fatalf("shutdown took %v with shutdown_timeout %v", took.Round(time.Millisecond), timeout)
	}
}

// A store that stops answering does not hold the shutdown past
// limits.shutdown_timeout: a feedback call stuck in the store is cut when
// the listeners' share of it has passed, and the final trial flush and saves,
// stuck too, give up at the deadline.
func TestShutdownBoundedByTimeoutWhenTheStoreHangs(t *testing.T) {
	const timeout = 2 * time.Second
	const margin = 750 * time.Millisecond // scheduling on a busy machine under -race
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := &hangingStore{stateStore: db}
	cfg := demoConfig(t, "")
	cfg.Limits.ShutdownTimeout = timeout
	g, err := newGateway(context.Background(), cfg, Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}, openedStore{stateStore: hs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	recs := recommendations(t, g.URL(), 5) // trials the final flush has to write
	hs.hang.Store(true)
	stuck := make(chan int, 1)
	go func() {
		ev := map[string]any{"events": []map[string]string{{"prediction_id": recs[0].PredictionID, "type": "click", "item_id": recs[0].Items[0].ID}}}
		stuck <- callQuiet("POST", g.URL()+"/v1/feedback", ev, nil)
	}()
	time.Sleep(200 * time.Millisecond) // the click reaches the store and waits there

	shutDownWithin(t, cancel, done, timeout, margin)
	if st := <-stuck; st == http.StatusOK {
		t.Fatal("the click stuck in the store was acknowledged")
	}
}

// A key store that stops answering does not hold the shutdown past
// limits.shutdown_timeout either: the last write of the keys' last-use
// times, stuck, gives up at the deadline.
func TestShutdownBoundedByTimeoutWhenTheKeyStoreHangs(t *testing.T) {
	const timeout = time.Second           // well under auth.FlushTimeout
	const margin = 750 * time.Millisecond // scheduling on a busy machine under -race
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := auth.Create(context.Background(), db, auth.Key{Name: "root", Scopes: []string{auth.ScopeAdmin}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs := &hangingStore{stateStore: db}
	cfg := demoConfig(t, "")
	cfg.Limits.ShutdownTimeout = timeout
	cfg.Auth.Mode = config.AuthKeys
	g, err := newGateway(context.Background(), cfg, Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}, openedStore{stateStore: hs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	// A call with the key notes its use, which the last write has to store.
	if r := do(t, "GET", g.URL()+"/v1/models", plain, false, nil); r.status != http.StatusOK {
		t.Fatalf("models with the key: %d", r.status)
	}
	hs.hang.Store(true)

	// Before the keys' first periodic write: the last one has the use to store.
	shutDownWithin(t, cancel, done, timeout, margin)
}

// New refuses Options that name neither a listener nor an address for a
// protocol, instead of listening on a random port of every interface.
func TestNewNeedsAListenerForEachProtocol(t *testing.T) {
	ln := func(t *testing.T) net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		name    string
		opts    func(t *testing.T) Options
		missing string // "" when New must succeed
	}{
		{"zero value", func(*testing.T) Options { return Options{} }, "HTTP"},
		{"no HTTP", func(*testing.T) Options { return Options{GRPCAddr: "127.0.0.1:0"} }, "HTTP"},
		{"no gRPC", func(*testing.T) Options { return Options{HTTPAddr: "127.0.0.1:0"} }, "gRPC"},
		{"gRPC listener only", func(t *testing.T) Options { return Options{GRPCListener: ln(t)} }, "HTTP"},
		{"addresses", func(*testing.T) Options { return Options{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"} }, ""},
		{"listeners", func(t *testing.T) Options { return Options{HTTPListener: ln(t), GRPCListener: ln(t)} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts(t)
			opts.DataDir = t.TempDir()
			g, err := New(context.Background(), demoConfig(t, ""), opts)
			if tc.missing == "" {
				if err != nil {
					t.Fatal(err)
				}
				g.Close()
				return
			}
			if err == nil {
				g.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, errNoListener) || !strings.Contains(err.Error(), tc.missing) {
				t.Fatalf("New: %v; want the missing %s listener named", err, tc.missing)
			}
		})
	}
}
