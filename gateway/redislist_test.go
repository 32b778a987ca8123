package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/backend/redislist"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store/redisstore"
)

// startLists starts a redis-server holding precomputed lists for model
// "batch": a sorted set for u1, a JSON list for u2 (version 2 reads JSON),
// and a popular list.
func startLists(t *testing.T) *redistest.Server {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.ZAdd(ctx, "recs:batch:1:u1", redis.Z{Member: "i3", Score: 0.9}, redis.Z{Member: "i1", Score: 0.7},
		redis.Z{Member: "i2", Score: 0.8}, redis.Z{Member: "i4", Score: 0.1}).Err())
	must(rdb.ZAdd(ctx, "recs:batch:1:popular", redis.Z{Member: "p1", Score: 2}, redis.Z{Member: "p2", Score: 1}).Err())
	must(rdb.Set(ctx, "recs:batch:2:u2", `[{"id": "j1", "score": 0.5}, {"id": "j2", "score": 0.6}]`, 0).Err())
	return srv
}

func listsBody(url, format, defaultKey string) string {
	b := fmt.Sprintf(`{"backend": {"type": "redis", "url": %q, "key": "recs:{model}:{version}:{user_id}", "format": %q, "timeout_ms": 200`, url, format)
	if defaultKey != "" {
		b += fmt.Sprintf(`, "default_key": %q`, defaultKey)
	}
	return b + `}}`
}

// A redis version registered through the admin API serves the user's
// list, else the popular one, honouring candidates, exclude and k.
func TestRedisListsThroughTheGateway(t *testing.T) {
	srv := startLists(t)
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/models/batch/versions/1", listsBody(srv.URL(), "zset", "recs:{model}:{version}:popular"), nil); st != http.StatusCreated {
		t.Fatalf("register batch@1: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/models/batch/versions/2", listsBody(srv.URL(), "json", ""), nil); st != http.StatusCreated {
		t.Fatalf("register batch@2: %d", st)
	}
	for _, ep := range []string{"lists", "lists2"} {
		arm := map[string]string{"lists": "batch@1", "lists2": "batch@2"}[ep]
		if st := call(t, "PUT", a.url+"/v1/endpoints/"+ep, `{"arms": ["`+arm+`"]}`, nil); st != http.StatusCreated {
			t.Fatalf("endpoint %s: %d", ep, st)
		}
	}
	tests := []struct {
		name, endpoint string
		body           map[string]any
		want           string
	}{
		{"the user's list", "lists", map[string]any{"user_id": "u1", "k": 3}, "i3=0.9,i2=0.8,i1=0.7"},
		{"exclude", "lists", map[string]any{"user_id": "u1", "k": 2, "exclude": []string{"i3"}}, "i2=0.8,i1=0.7"},
		{"candidates", "lists", map[string]any{"user_id": "u1", "candidates": []string{"i4", "i1", "x"}}, "i1=0.7,i4=0.1"},
		{"the popular list", "lists", map[string]any{"user_id": "u9", "context": map[string]string{"surface": "home"}}, "p1=2,p2=1"},
		{"json", "lists2", map[string]any{"user_id": "u2"}, "j2=0.6,j1=0.5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recResp
			if st := call(t, "POST", a.url+"/v1/endpoints/"+tc.endpoint+"/recommend", tc.body, &rec); st != 200 {
				t.Fatalf("recommend: %d", st)
			}
			var got []string
			for _, it := range rec.Items {
				got = append(got, fmt.Sprintf("%s=%g", it.ID, it.Score))
			}
			if strings.Join(got, ",") != tc.want || rec.Fallback {
				t.Fatalf("items %v (fallback %v), want %s", got, rec.Fallback, tc.want)
			}
		})
	}
	// A batch's entries that chose the arm are one pipelined lookup; a
	// user without a list still gets the popular one.
	var batch struct {
		Responses []recResp `json:"responses"`
	}
	body := map[string]any{"requests": []map[string]any{{"user_id": "u1", "k": 1}, {"user_id": "u9", "k": 1}, {"user_id": "u1", "k": 1, "exclude": []string{"i3"}}}}
	if st := call(t, "POST", a.url+"/v1/endpoints/lists/recommend/batch", body, &batch); st != 200 || len(batch.Responses) != 3 {
		t.Fatalf("batch: %d, %d responses", st, len(batch.Responses))
	}
	for i, want := range []string{"i3", "p1", "i2"} {
		if r := batch.Responses[i]; len(r.Items) != 1 || r.Items[0].ID != want || r.Arm != "batch@1" {
			t.Fatalf("batch entry %d: %+v, want %s from batch@1", i, r, want)
		}
	}
	var mv map[string]any
	call(t, "GET", a.url+"/v1/models/batch/versions/1", nil, &mv)
	if b := mv["backend"].(map[string]any); b["type"] != "redis" || b["format"] != "zset" || b["default_key"] != "recs:{model}:{version}:popular" {
		t.Fatalf("stored backend %v", b)
	}
}

// A user without a list on a version without default_key is an arm error
// of class not_found: the request is served by the fallback arm.
func TestRedisListsNotFoundFallsBack(t *testing.T) {
	srv := startLists(t)
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/models/batch/versions/1", listsBody(srv.URL(), "zset", ""), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/mixed", `{"arms": ["batch@1", "mf@1"], "fallback": "mf@1", "policy": {"type": "uniform"}}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	fellBack := 0
	for i := 0; i < 40; i++ {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/mixed/recommend", map[string]any{"user_id": "u9"}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if rec.Arm != "mf@1" || len(rec.Items) == 0 {
			t.Fatalf("served by %s with %d items, want mf@1", rec.Arm, len(rec.Items))
		}
		if rec.Fallback {
			fellBack++
		}
	}
	if fellBack == 0 {
		t.Fatal("the uniform policy never chose batch@1 in 40 requests")
	}
	errs := samples(scrapeMetrics(t, a.url)["modelgate_arm_errors_total"])
	var notFound float64
	for k, v := range errs {
		if strings.Contains(k, "arm=batch@1") && strings.Contains(k, "class=not_found") {
			notFound += v
		}
	}
	if int(notFound) != fellBack {
		t.Fatalf("not_found errors %v, fallbacks %d (series %v)", notFound, fellBack, errs)
	}
}

func TestRedisListsRegistrationErrors(t *testing.T) {
	srv := startLists(t)
	a := startApp(t, demoConfig(t, ""))
	down := redistest.UnusedURL(t)
	cases := []struct {
		name, body, field, code, msg string
	}{
		{"server down", listsBody(down, "zset", ""), "backend.url", "invalid_model", "does not answer"},
		{"default missing", listsBody(srv.URL(), "zset", "recs:nope"), "backend.default_key", "invalid_model", "does not exist"},
		{"default of another type", listsBody(srv.URL(), "json", "recs:{model}:{version}:popular"), "backend.default_key", "invalid_model", "holds a zset"},
		{"unknown placeholder", strings.Replace(listsBody(srv.URL(), "zset", ""), "{user_id}", "{uid}", 1), "backend.key", "invalid_backend", "{uid}"},
		{"no url, no --redis-url", `{"backend": {"type": "redis", "key": "r:{user_id}"}}`, "backend.url", "missing_field", "--redis-url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e errResp
			st := call(t, "PUT", a.url+"/v1/models/batch/versions/1", tc.body, &e)
			if st != 400 || e.Error.Field != tc.field || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.msg) {
				t.Fatalf("got %d %+v, want 400 %s on %s mentioning %q", st, e.Error, tc.code, tc.field, tc.msg)
			}
			if st := call(t, "GET", a.url+"/v1/models/batch/versions/1", nil, nil); st != 404 {
				t.Fatal("a refused version was stored")
			}
		})
	}
}

// No key template can build a key of the gateway's own state in a Redis
// it shares with the lists.
func TestRedisListsReservedPrefix(t *testing.T) {
	if redislist.ReservedPrefix != redisstore.DefaultPrefix {
		t.Fatalf("redislist reserves %q, the store's keys start with %q", redislist.ReservedPrefix, redisstore.DefaultPrefix)
	}
}

// examples/redis-lists/config.yaml parses, seeds a gateway (which checks
// that its Redis answers and holds the popular list), and its batch arm
// serves the lists load.sh writes, next to the live arms.
func TestRedisListsDemoConfig(t *testing.T) {
	dir := filepath.Join("..", "examples", "redis-lists")
	raw, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const demoURL = "redis://127.0.0.1:6379/0"
	if !strings.Contains(string(raw), demoURL) {
		t.Fatalf("config.yaml does not read %s", demoURL)
	}
	srv := redistest.Start(t, redistest.Options{})
	cfg, err := config.Parse([]byte(strings.Replace(string(raw), demoURL, srv.URL(), 1)), dir)
	if err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client()
	ctx := context.Background()
	// As load.sh leaves them (examples/redis-lists/gen tests the real job).
	if err := rdb.ZAdd(ctx, "recs:batch:nightly:u0", redis.Z{Member: "i7", Score: 5}, redis.Z{Member: "i8", Score: 4}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, "recs:batch:nightly:popular", redis.Z{Member: "i1", Score: 1}).Err(); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)
	var ep struct {
		Arms []string `json:"arms"`
	}
	if st := call(t, "GET", a.url+"/v1/endpoints/home", nil, &ep); st != 200 || strings.Join(ep.Arms, ",") != "mf@1,mf@2,batch@nightly" {
		t.Fatalf("endpoint home: %d, arms %v", st, ep.Arms)
	}
	served := map[string]int{}
	for i := 0; i < 200 && served["batch@nightly"] < 2; i++ {
		user := []string{"u0", "u300"}[i%2]
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": user}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		served[rec.Arm]++
		if rec.Arm != "batch@nightly" {
			continue
		}
		want := map[string]string{"u0": "i7,i8", "u300": "i1"}[user]
		var got []string
		for _, it := range rec.Items {
			got = append(got, it.ID)
		}
		if strings.Join(got, ",") != want || rec.Fallback {
			t.Fatalf("batch@nightly served %s %v (fallback %v), want %s", user, got, rec.Fallback, want)
		}
	}
	if served["batch@nightly"] < 2 {
		t.Fatalf("batch@nightly served %d of the requests (%v)", served["batch@nightly"], served)
	}
}

// A version without a url reads the server's --redis-url: replicas that
// share that Redis register it once and every one of them serves its
// lists, which live beside the gateway's own keys.
func TestRedisListsServerURL(t *testing.T) {
	srv := startLists(t)
	reps := replicas(t, srv, 2)
	body := `{"backend": {"type": "redis", "key": "recs:{model}:{version}:{user_id}", "default_key": "recs:{model}:{version}:popular"}}`
	if st := call(t, "PUT", reps[0].url+"/v1/models/batch/versions/1", body, nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", reps[0].url+"/v1/endpoints/lists", `{"arms": ["batch@1"]}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	waitUntil(t, 5*time.Second, func() bool {
		return call(t, "GET", reps[1].url+"/v1/endpoints/lists", nil, nil) == 200
	})
	for _, a := range reps {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/lists/recommend", map[string]any{"user_id": "u1", "k": 2}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if len(rec.Items) != 2 || rec.Items[0].ID != "i3" || rec.Items[1].ID != "i2" {
			t.Fatalf("items %+v, want i3, i2", rec.Items)
		}
	}
	var mv map[string]any
	call(t, "GET", reps[1].url+"/v1/models/batch/versions/1", nil, &mv)
	if b := mv["backend"].(map[string]any); b["url"] != nil {
		t.Fatalf("stored backend %v: the url was filled in, so it would not follow --redis-url", b)
	}
}

// A stored redis version whose Redis is down when the gateway starts
// leaves its arm unavailable, not the gateway down: the other arms serve,
// /readyz says 503, and the arm serves again once Redis answers.
func TestRedisListsDownAtStart(t *testing.T) {
	srv := startLists(t)
	cfg := demoConfig(t, "")
	dir := t.TempDir()
	url, stop := runOn(t, cfg, dir)
	if st := call(t, "PUT", url+"/v1/models/batch/versions/1", listsBody(srv.URL(), "zset", "recs:{model}:{version}:popular"), nil); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	if st := call(t, "PUT", url+"/v1/endpoints/mixed", `{"arms": ["batch@1", "mf@1"], "fallback": "mf@1"}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	stop()
	srv.Stop()
	url, _ = runOn(t, cfg, dir)
	if st := call(t, "GET", url+"/readyz", nil, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down: %d, want 503", st)
	}
	for range 10 {
		var rec recResp
		if st := call(t, "POST", url+"/v1/endpoints/mixed/recommend", map[string]any{"user_id": "u1"}, &rec); st != 200 || rec.Arm != "mf@1" {
			t.Fatalf("recommend with Redis down: %d from %s", st, rec.Arm)
		}
	}
	srv.Restart() // without persistence: load the lists again
	rdb := srv.Client()
	if err := rdb.ZAdd(context.Background(), "recs:batch:1:u1", redis.Z{Member: "i3", Score: 1}).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 3*redislist.HealthInterval, func() bool { return call(t, "GET", url+"/readyz", nil, nil) == 200 })
	servedByBatch := false
	for i := 0; i < 100 && !servedByBatch; i++ {
		var rec recResp
		if st := call(t, "POST", url+"/v1/endpoints/mixed/recommend", map[string]any{"user_id": "u1"}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		servedByBatch = rec.Arm == "batch@1" && len(rec.Items) == 1 && rec.Items[0].ID == "i3"
	}
	if !servedByBatch {
		t.Fatal("batch@1 never served after Redis came back")
	}
}
