package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/apitest"
	"github.com/modelgate/modelgate/internal/redistest"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
)

// syncBuffer is a log sink the test can read while the app writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// authApp is a test app with auth.mode keys, an HTTP and a gRPC server, an
// admin key and the captured log.
type authApp struct {
	*testApp
	admin string
	logs  *syncBuffer
}

func startAuthApp(t *testing.T, redisURL string, withAdmin bool) *authApp {
	t.Helper()
	cfg := demoConfig(t, "")
	cfg.Auth.Mode = config.AuthKeys
	cfg.RedisURL = redisURL
	dir := t.TempDir()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ta := startGateway(t, cfg, Options{DataDir: dir, Logger: log}, openedStore{})
	out := &authApp{testApp: ta, logs: logs}
	if withAdmin {
		out.admin = out.newKey(t, "root-"+strconv.Itoa(int(time.Now().UnixNano()%1e6)), 0, 0, auth.ScopeAdmin)
	}
	return out
}

// newKey creates a key on the app's cache directly.
func (a *authApp) newKey(t *testing.T, name string, rate float64, burst int, scopes ...string) string {
	t.Helper()
	plain, _, err := a.keys.Create(context.Background(), auth.Key{Name: name, Scopes: scopes, Rate: rate, Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

type authResp struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with an optional Bearer key (or, with basic, HTTP
// Basic with the key as password).
func do(t *testing.T, method, url, key string, basic bool, body any) authResp {
	t.Helper()
	send := apitest.Do
	if basic {
		send = apitest.DoBasic
	}
	r := send(t, method, url, key, body)
	return authResp{r.Status, r.Header, r.Body}
}

func errCode(raw []byte) (code, msg string) {
	var e errResp
	_ = json.Unmarshal(raw, &e)
	return e.Error.Code, e.Error.Message
}

func TestAuthRouteScopes(t *testing.T) {
	a := startAuthApp(t, "", true)
	keys := map[string]string{}
	for _, s := range auth.AllScopes {
		keys[s] = a.newKey(t, "k-"+s, 0, 0, s)
	}
	mf2, err := filepath.Abs(filepath.Join(demoDir, "models", "mf", "2"))
	if err != nil {
		t.Fatal(err)
	}
	// Every route, in an order in which each answers its normal status;
	// wrong is a scope that may not call it.
	cases := []struct {
		method, route, path string
		body                any
		need, wrong         string
		want                int
	}{
		{"POST", "/v1/endpoints/:endpoint/recommend", "/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, "client", "analyst", 200},
		{"POST", "/v1/endpoints/:endpoint/recommend/batch", "/v1/endpoints/home/recommend/batch", map[string]any{"requests": []any{map[string]any{"user_id": "u1"}}}, "client", "analyst", 200},
		{"POST", "/v1/feedback", "/v1/feedback", map[string]any{"events": []any{map[string]any{"prediction_id": "bogus", "type": "click"}}}, "client", "ml", 200},
		{"GET", "/v1/models", "/v1/models", nil, "ml", "client", 200},
		{"PUT", "/v1/models/:model/versions/:version", "/v1/models/mf/versions/9", map[string]any{"backend": map[string]any{"type": "embedded", "path": mf2}}, "ml", "analyst", 201},
		{"GET", "/v1/models/:model/versions/:version", "/v1/models/mf/versions/9", nil, "ml", "client", 200},
		{"GET", "/v1/endpoints", "/v1/endpoints", nil, "ml", "analyst", 200},
		{"PUT", "/v1/endpoints/:endpoint", "/v1/endpoints/e2", map[string]any{"arms": []string{"mf@1"}, "shadows": []any{map[string]any{"arm": "mf@2", "share": 0.5}}}, "ml", "client", 201},
		{"POST", "/v1/endpoints/:endpoint/shadows/:arm/promote", "/v1/endpoints/e2/shadows/mf@2/promote", nil, "ml", "analyst", 200},
		{"GET", "/v1/endpoints/:endpoint", "/v1/endpoints/e2", nil, "ml", "client", 200},
		{"POST", "/v1/endpoints/:endpoint/arms", "/v1/endpoints/e2/arms", map[string]any{"arm": "mf@9"}, "ml", "analyst", 201},
		{"PATCH", "/v1/endpoints/:endpoint/arms/:arm", "/v1/endpoints/e2/arms/mf@9", map[string]any{"state": "paused"}, "ml", "client", 200},
		{"DELETE", "/v1/endpoints/:endpoint", "/v1/endpoints/e2", nil, "ml", "analyst", 204},
		{"DELETE", "/v1/models/:model/versions/:version", "/v1/models/mf/versions/9", nil, "ml", "client", 204},
		{"GET", "/v1/endpoints/:endpoint/report", "/v1/endpoints/home/report", nil, "analyst", "client", 200},
		{"GET", "/v1/endpoints/:endpoint/report/history", "/v1/endpoints/home/report/history", nil, "analyst", "client", 200},
		{"GET", "/ui", "/ui", nil, "analyst", "client", 200}, // redirect followed, with the header
		{"GET", "/ui/", "/ui/", nil, "analyst", "client", 200},
		{"GET", "/ui/endpoints/:endpoint", "/ui/endpoints/home", nil, "analyst", "ml_never", 200},
		{"GET", "/ui/static/*filepath", "/ui/static/style.css", nil, "analyst", "client", 200},
		{"HEAD", "/ui/static/*filepath", "/ui/static/style.css", nil, "analyst", "client", 200},
		{"POST", "/v1/keys", "/v1/keys", map[string]any{"name": "tmp", "scopes": []string{"client"}, "rate": 10}, "admin", "ml", 201},
		{"GET", "/v1/keys", "/v1/keys", nil, "admin", "ml", 200},
		{"DELETE", "/v1/keys/:name", "/v1/keys/tmp", nil, "admin", "ml", 204},
		{"GET", "/v1/audit", "/v1/audit", nil, "admin", "analyst", 200},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.method+" "+c.route] = true
		if c.wrong == "ml_never" {
			c.wrong = "client"
		}
		url := a.url + c.path
		if r := do(t, c.method, url, "", false, c.body); r.status != 401 || (c.method != "HEAD" && codeOf(r.body) != "unauthenticated") {
			t.Errorf("%s %s without a key: %d %s", c.method, c.path, r.status, r.body)
		}
		bogus, _ := auth.Generate()
		if r := do(t, c.method, url, bogus, false, c.body); r.status != 401 {
			t.Errorf("%s %s with an unknown key: %d %s", c.method, c.path, r.status, r.body)
		}
		r := do(t, c.method, url, keys[c.wrong], false, c.body)
		code, msg := errCode(r.body)
		if r.status != 403 || (c.method != "HEAD" && (code != "forbidden" || !strings.Contains(msg, "needs scope "+c.need))) {
			t.Errorf("%s %s with scope %s: %d %s", c.method, c.path, c.wrong, r.status, r.body)
		}
		if r := do(t, c.method, url, keys[c.need], false, c.body); r.status != c.want {
			t.Errorf("%s %s with scope %s: %d, want %d: %s", c.method, c.path, c.need, r.status, c.want, r.body)
		}
	}
	// Every registered route is in the table above.
	for _, ri := range a.srv.Handler().(*gin.Engine).Routes() {
		switch ri.Path {
		case "/healthz", "/readyz", "/metrics":
			continue
		}
		if !covered[ri.Method+" "+ri.Path] {
			t.Errorf("route %s %s is not tested", ri.Method, ri.Path)
		}
	}
	// Open routes.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := do(t, "GET", a.url+p, "", false, nil); r.status != 200 {
			t.Errorf("%s without a key: %d", p, r.status)
		}
	}
	// ml reads everything analysts read; admin does everything.
	for _, p := range []string{"/v1/endpoints/home/report", "/ui/"} {
		for _, s := range []string{"ml", "admin"} {
			if r := do(t, "GET", a.url+p, keys[s], false, nil); r.status != 200 {
				t.Errorf("GET %s as %s: %d", p, s, r.status)
			}
		}
	}
	// An unknown path needs a key, then is a 404.
	if r := do(t, "GET", a.url+"/v1/nope", "", false, nil); r.status != 401 {
		t.Errorf("unknown path without a key: %d", r.status)
	}
	if r := do(t, "GET", a.url+"/v1/nope", keys["client"], false, nil); r.status != 404 {
		t.Errorf("unknown path with a key: %d", r.status)
	}
}

func codeOf(raw []byte) string { c, _ := errCode(raw); return c }

func TestAuthUIBasic(t *testing.T) {
	a := startAuthApp(t, "", false)
	an := a.newKey(t, "analyst1", 0, 0, "analyst")
	r := do(t, "GET", a.url+"/ui/", "", false, nil)
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("/ui/ without auth: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := do(t, "GET", a.url+"/ui/", an, true, nil); r.status != 200 || !strings.Contains(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("/ui/ with Basic auth: %d", r.status)
	}
	if r := do(t, "GET", a.url+"/ui/endpoints/home", an, true, nil); r.status != 200 {
		t.Fatalf("/ui/endpoints/home with Basic auth: %d", r.status)
	}
	if r := do(t, "GET", a.url+"/ui/", "mg_wrong", true, nil); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("/ui/ with a wrong password: %d", r.status)
	}
	// Basic auth is for the pages only.
	if r := do(t, "GET", a.url+"/v1/endpoints/home/report", an, true, nil); r.status != 401 {
		t.Fatalf("API with Basic auth: %d", r.status)
	}
}

func TestAuthGRPC(t *testing.T) {
	a := startAuthApp(t, "", false)
	client := a.newKey(t, "app", 0, 0, "client")
	ml := a.newKey(t, "mlk", 0, 0, "ml")
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	ctxWith := func(key string) context.Context {
		ctx := context.Background()
		if key != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
		}
		return ctx
	}
	calls := map[string]func(ctx context.Context) error{
		"Recommend": func(ctx context.Context) error {
			_, err := c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "home", UserId: "u"})
			return err
		},
		"Feedback": func(ctx context.Context) error {
			_, err := c.Feedback(ctx, &pb.FeedbackRequest{Events: []*pb.FeedbackEvent{{PredictionId: "bogus", Type: "click"}}})
			return err
		},
	}
	bogus, _ := auth.Generate()
	for name, f := range calls {
		if err := f(ctxWith("")); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without a key: %v", name, err)
		}
		if err := f(ctxWith(bogus)); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s with an unknown key: %v", name, err)
		}
		if err := f(ctxWith(ml)); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "needs scope client") {
			t.Errorf("%s with scope ml: %v", name, err)
		}
		if err := f(ctxWith(client)); err != nil {
			t.Errorf("%s with scope client: %v", name, err)
		}
	}
	// Rate limited: ResourceExhausted.
	lim := a.newKey(t, "lim", 1, 1, "client")
	var last error
	for range 5 {
		last = calls["Recommend"](ctxWith(lim))
	}
	if status.Code(last) != codes.ResourceExhausted {
		t.Errorf("over the limit: %v", last)
	}
}

// hammer calls GET /v1/models with key on the urls from 4 goroutines each
// for d, counting 200s and 429s (each 429 must carry a Retry-After ≥ 1).
func hammer(t *testing.T, urls []string, key string, d time.Duration) (ok, limited int64) {
	t.Helper()
	var okN, limN, bad atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for _, u := range urls {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					req, _ := http.NewRequest("GET", u+"/v1/models", nil)
					req.Header.Set("Authorization", "Bearer "+key)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						bad.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						okN.Add(1)
					case 429:
						limN.Add(1)
						if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
							bad.Add(1)
						}
					default:
						bad.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d unexpected answers (errors, other statuses, 429 without Retry-After)", bad.Load())
	}
	return okN.Load(), limN.Load()
}

func TestAuthRateLimit(t *testing.T) {
	a := startAuthApp(t, "", false)
	key := a.newKey(t, "hammer", 50, 10, "ml")
	ok, limited := hammer(t, []string{a.url}, key, 3*time.Second)
	t.Logf("50/s burst 10 for 3 s: %d ok, %d rate limited", ok, limited)
	if ok < 144 || ok > 176 || limited == 0 {
		t.Fatalf("%d successes (want 160 ± 10%%), %d limited", ok, limited)
	}
	r := do(t, "GET", a.url+"/v1/models", key, false, nil)
	for r.status == 200 {
		r = do(t, "GET", a.url+"/v1/models", key, false, nil)
	}
	if code, msg := errCode(r.body); r.status != 429 || code != "rate_limited" || r.header.Get("Retry-After") != "1" || strings.Contains(msg, key) {
		t.Fatalf("limited answer: %d %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
}

func TestAuthRedisReplicas(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"one server", func(t *testing.T) string { return redistest.Start(t, redistest.Options{}).URL() }},
		{"cluster", func(t *testing.T) string {
			if testing.Short() {
				t.Skip("a cluster takes seconds to form")
			}
			return redistest.StartCluster(t, redistest.ClusterOptions{}).URL()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testAuthRedisReplicas(t, tc.url(t)) })
	}
}

// testAuthRedisReplicas checks that two replicas sharing the Redis at url
// share a key's rate limit and see a key made or revoked on the other
// within a second.
func testAuthRedisReplicas(t *testing.T, url string) {
	a := startAuthApp(t, url, true)
	b := startAuthApp(t, url, false)
	key := a.newKey(t, "shared", 50, 10, "ml")
	// The key reaches the other replica within a second.
	deadline := time.Now().Add(time.Second)
	for do(t, "GET", b.url+"/v1/models", a.admin, false, nil).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("a key made on one replica is not accepted by the other within 1 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // the hammered key's bucket is full again
	ok, limited := hammer(t, []string{a.url, b.url}, key, 3*time.Second)
	t.Logf("two replicas, 50/s burst 10 for 3 s: %d ok, %d rate limited", ok, limited)
	if ok < 144 || ok > 176 || limited == 0 {
		t.Fatalf("%d successes across replicas (want 160 ± 10%%), %d limited", ok, limited)
	}
	// Revocation on a is seen by b within a second.
	victim := a.newKey(t, "victim", 0, 0, "client")
	deadline = time.Now().Add(time.Second)
	for do(t, "POST", b.url+"/v1/feedback", victim, false, map[string]any{"events": []any{}}).status == 401 {
		if time.Now().After(deadline) {
			t.Fatal("new key not seen by the other replica")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := do(t, "DELETE", a.url+"/v1/keys/victim", a.admin, false, nil); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	start := time.Now()
	for do(t, "GET", b.url+"/v1/endpoints/home/report", victim, false, nil).status != 401 {
		if time.Since(start) > time.Second {
			t.Fatal("revoked key still accepted by the other replica after 1 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revocation seen by the other replica after %v", time.Since(start))
}

func TestAuthKeysAPIAndNoKeysInLogs(t *testing.T) {
	a := startAuthApp(t, "", true)
	r := do(t, "POST", a.url+"/v1/keys", a.admin, false, map[string]any{"name": "app1", "scopes": []string{"client"}, "rate": 100, "burst": 200})
	var created struct {
		Name   string   `json:"name"`
		Key    string   `json:"key"`
		Scopes []string `json:"scopes"`
		Rate   float64  `json:"rate"`
		Burst  int      `json:"burst"`
	}
	if err := json.Unmarshal(r.body, &created); r.status != 201 || err != nil || created.Name != "app1" || !auth.WellFormed(created.Key) ||
		created.Rate != 100 || created.Burst != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", a.url+"/v1/keys", a.admin, false, map[string]any{"name": "app1", "scopes": []string{"client"}}); r.status != 409 {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", a.url+"/v1/keys", a.admin, false, map[string]any{"name": "x", "scopes": []string{"root"}}); r.status != 400 {
		t.Fatalf("bad scope: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", a.url+"/v1/endpoints/home/recommend", created.Key, false, map[string]any{"user_id": "u"}); r.status != 200 {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}
	a.keys.Flush(context.Background())
	r = do(t, "GET", a.url+"/v1/keys", a.admin, false, nil)
	if r.status != 200 || strings.Contains(string(r.body), created.Key) || strings.Contains(string(r.body), "hash") ||
		!strings.Contains(string(r.body), `"app1"`) || !strings.Contains(string(r.body), "last_used") {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", a.url+"/v1/keys/app1", a.admin, false, nil); r.status != 204 {
		t.Fatalf("revoke: %d", r.status)
	}
	if r := do(t, "DELETE", a.url+"/v1/keys/app1", a.admin, false, nil); r.status != 404 {
		t.Fatalf("revoke again: %d", r.status)
	}
	if r := do(t, "POST", a.url+"/v1/endpoints/home/recommend", created.Key, false, map[string]any{"user_id": "u"}); r.status != 401 {
		t.Fatalf("revoked key: %d", r.status)
	}
	// gRPC with the admin key, and a panic-free failure path, for the log.
	logs := a.logs.String()
	if !strings.Contains(logs, `"request"`) {
		t.Fatalf("the debug access log did not run: %.500s", logs)
	}
	for _, k := range []string{created.Key, a.admin, created.Key[3:], a.admin[3:]} {
		if strings.Contains(logs, k) {
			t.Fatalf("a key appears in the log")
		}
	}
}

// A batch of n entries is n requests for its key's rate limit: refused
// whole (429, Retry-After) when the bucket holds fewer, and then it costs
// one request (the call's own), as an API call.
func TestBatchCountsAgainstRateLimit(t *testing.T) {
	a := startAuthApp(t, "", false)
	key := a.newKey(t, "slow", 0.01, 5, auth.ScopeClient)
	batch := func(n int) authResp {
		reqs := make([]any, n)
		for i := range reqs {
			reqs[i] = map[string]any{"user_id": "u"}
		}
		return do(t, "POST", a.url+"/v1/endpoints/home/recommend/batch", key, false, map[string]any{"requests": reqs})
	}
	if r := batch(3); r.status != 200 {
		t.Fatalf("3 of 5: %d %s", r.status, r.body)
	}
	r := batch(3)
	if code, _ := errCode(r.body); r.status != 429 || code != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("3 more of the 2 left: %d %s (Retry-After %q); want 429 rate_limited", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := do(t, "POST", a.url+"/v1/endpoints/home/recommend", key, false, map[string]any{"user_id": "u"}); r.status != 200 {
		t.Fatalf("the one left: %d %s; the refused batch must have taken only its call's", r.status, r.body)
	}
	if r := do(t, "POST", a.url+"/v1/endpoints/home/recommend", key, false, map[string]any{"user_id": "u"}); r.status != 429 {
		t.Fatalf("a single call on an empty bucket: %d", r.status)
	}
	// A batch larger than the burst passes on a full bucket, taking it all.
	fast := a.newKey(t, "fast", 0.01, 5, auth.ScopeClient)
	key = fast
	if r := batch(64); r.status != 200 {
		t.Fatalf("64 on a full bucket of 5: %d %s; want 200", r.status, r.body)
	}
	if r := batch(1); r.status != 429 {
		t.Fatalf("after a batch above the burst: %d; want the bucket empty", r.status)
	}
}
