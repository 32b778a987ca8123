package redislist_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/redislist"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/tlsconf/tlsconftest"
)

// startRedis starts a redis-server and returns it with a client to fill it.
func startRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	return srv, srv.Client()
}

// parse decodes and checks a backend section as a registration does.
func parse(t *testing.T, d *redislist.Driver, section string) backend.Config {
	t.Helper()
	_, cfg, err := backend.NewDrivers(d).Parse([]byte(section))
	if err != nil {
		t.Fatalf("parse %s: %v", section, err)
	}
	return cfg
}

// load registers section (validated) as model m version 1 and closes it
// with the test.
func load(t *testing.T, d *redislist.Driver, section string) backend.Scorer {
	t.Helper()
	sc, err := d.Load(context.Background(), parse(t, d, section), backend.LoadOptions{Model: "m", Version: "1", Validate: true})
	if err != nil {
		t.Fatalf("load %s: %v", section, err)
	}
	t.Cleanup(func() { _ = sc.(*redislist.List).Close() })
	return sc
}

func ids(items []backend.Item) string {
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = fmt.Sprintf("%s=%g", it.ID, it.Score)
	}
	return strings.Join(s, ",")
}

func zadd(t *testing.T, rdb *redis.Client, key string, kv ...any) {
	t.Helper()
	var zs []redis.Z
	for i := 0; i < len(kv); i += 2 {
		zs = append(zs, redis.Z{Member: kv[i], Score: kv[i+1].(float64)})
	}
	if err := rdb.ZAdd(context.Background(), key, zs...).Err(); err != nil {
		t.Fatal(err)
	}
}

func set(t *testing.T, rdb *redis.Client, key, val string) {
	t.Helper()
	if err := rdb.Set(context.Background(), key, val, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name, section string
		serverURL     string
		field, code   string // "" when accepted
	}{
		{name: "minimal", section: `{"type": "redis", "url": "redis://127.0.0.1:6379/0", "key": "r:{user_id}"}`},
		{name: "server url", section: `{"type": "redis", "key": "r:{user_id}"}`, serverURL: "redis://127.0.0.1:6379/1"},
		{name: "tls url", section: `{"type": "redis", "url": "rediss://u:p@redis.example:6380/2", "key": "r:{user_id}", "format": "json"}`},
		{name: "sentinel url", section: `{"type": "redis", "url": "redis+sentinel://s1:26379,s2:26379/lists/3", "key": "r:{user_id}"}`},
		{name: "cluster url", section: `{"type": "redis", "url": "redis+cluster://a:6379,b:6379", "key": "r:{user_id}"}`, field: "backend.url", code: "invalid_backend"},
		{name: "no url anywhere", section: `{"type": "redis", "key": "r:{user_id}"}`, field: "backend.url", code: "missing_field"},
		{name: "bad url", section: `{"type": "redis", "url": "http://x", "key": "r:{user_id}"}`, field: "backend.url", code: "invalid_backend"},
		{name: "bad server url", section: `{"type": "redis", "key": "r:{user_id}"}`, serverURL: "http://x", field: "backend", code: "invalid_backend"},
		{name: "no key", section: `{"type": "redis", "url": "redis://h:1/0"}`, field: "backend.key", code: "missing_field"},
		{name: "unknown placeholder", section: `{"type": "redis", "url": "redis://h:1/0", "key": "r:{uid}"}`, field: "backend.key", code: "invalid_backend"},
		{name: "user in default key", section: `{"type": "redis", "url": "redis://h:1/0", "key": "r:{user_id}", "default_key": "d:{user_id}"}`, field: "backend.default_key", code: "invalid_backend"},
		{name: "bad default key", section: `{"type": "redis", "url": "redis://h:1/0", "key": "r:{user_id}", "default_key": "d:{x"}`, field: "backend.default_key", code: "invalid_backend"},
		{name: "bad format", section: `{"type": "redis", "url": "redis://h:1/0", "key": "r:{user_id}", "format": "list"}`, field: "backend.format", code: "invalid_backend"},
		{name: "unknown field", section: `{"type": "redis", "url": "redis://h:1/0", "key": "r:{user_id}", "target": "h:1"}`, field: "backend.target", code: ""},
		{name: "negative timeout", section: `{"type": "redis", "url": "redis://h:1/0", "key": "r:{user_id}", "timeout_ms": -1}`, field: "backend.timeout_ms", code: "invalid_backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg, err := backend.NewDrivers(redislist.NewDriver(tc.serverURL)).Parse([]byte(tc.section))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if f := cfg.(*redislist.Spec).Format; f != redislist.FormatZSet && f != redislist.FormatJSON {
					t.Fatalf("format %q after Check", f)
				}
				return
			}
			f := fault.As(err)
			if f == nil || f.Field != tc.field || (tc.code != "" && f.Code != tc.code) {
				t.Fatalf("got %v, want a fault on %s with code %q", err, tc.field, tc.code)
			}
		})
	}
	// The stored section keeps its shape, with the format filled in.
	_, cfg, err := backend.NewDrivers(redislist.NewDriver("redis://h:1/0")).Parse([]byte(`{"type": "redis", "key": "r:{user_id}", "timeout_ms": 20}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := backend.EncodeConfig(redislist.Type, cfg)
	if err != nil || string(raw) != `{"type":"redis","key":"r:{user_id}","format":"zset","timeout_ms":20}` {
		t.Fatalf("encoded %s, %v", raw, err)
	}
}

func TestPredict(t *testing.T) {
	srv, rdb := startRedis(t)
	d := redislist.NewDriver(srv.URL())
	// Model "m" version "1": the zset lists.
	zadd(t, rdb, "z:m:1:u1", "a", 0.9, "b", 0.8, "c", 0.7, "d", 0.6, "e", 0.5)
	zadd(t, rdb, "z:m:1:ties", "x", 2.0, "d", 1.0, "b", 1.0, "c", 1.0, "a", 1.0, "e", 0.0)
	zadd(t, rdb, "z:m:1:music:u1", "song", 1.0)
	zadd(t, rdb, "z:m:1:popular", "p1", 3.0, "p2", 2.0)
	zadd(t, rdb, "z:m:1:inf", "top", math.Inf(1), "b", 1.0)
	set(t, rdb, "z:m:1:str", `[{"id": "a", "score": 1}]`)
	set(t, rdb, "j:u1", `[{"id": "a", "score": 0.5}, {"id": "b", "score": 0.9}, {"id": "c", "score": 0.5}, {"id": "b", "score": 0.1}]`)
	set(t, rdb, "j:popular", `[{"id": "p", "score": 1}]`)
	set(t, rdb, "j:empty", `[]`)
	set(t, rdb, "j:bad", `[{"id": "a", "score": 1},`)
	set(t, rdb, "j:extra", `[{"id": "a", "score": 1, "rank": 1}]`)
	set(t, rdb, "j:big", `[`+strings.Repeat(`{"id":"a","score":1},`, redislist.MaxJSONBytes/20)+`{"id":"z","score":1}]`)
	zadd(t, rdb, "j:zset", "a", 1.0)

	zset := load(t, d, `{"type": "redis", "key": "z:{model}:{version}:{user_id}", "default_key": "z:{model}:{version}:popular"}`)
	zsetCtx := load(t, d, `{"type": "redis", "key": "z:{model}:{version}:{context.surface}:{user_id}", "default_key": "z:{model}:{version}:popular"}`)
	zsetNoDefault := load(t, d, `{"type": "redis", "key": "z:{model}:{version}:{user_id}"}`)
	js := load(t, d, `{"type": "redis", "key": "j:{user_id}", "default_key": "j:popular", "format": "json"}`)
	jsNoDefault := load(t, d, `{"type": "redis", "key": "j:{user_id}", "format": "json"}`)

	excl := func(ids ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, id := range ids {
			m[id] = struct{}{}
		}
		return m
	}
	tests := []struct {
		name  string
		sc    backend.Scorer
		req   backend.Request
		want  string // the items, or "" with class
		class string
	}{
		{name: "zset top k", sc: zset, req: backend.Request{UserID: "u1", K: 3}, want: "a=0.9,b=0.8,c=0.7"},
		{name: "zset k past the list", sc: zset, req: backend.Request{UserID: "u1", K: 10}, want: "a=0.9,b=0.8,c=0.7,d=0.6,e=0.5"},
		{name: "zset exclude", sc: zset, req: backend.Request{UserID: "u1", K: 2, Exclude: excl("a", "c", "zz")}, want: "b=0.8,d=0.6"},
		{name: "zset ties by id", sc: zset, req: backend.Request{UserID: "ties", K: 3}, want: "x=2,a=1,b=1"},
		{name: "zset ties with exclude", sc: zset, req: backend.Request{UserID: "ties", K: 2, Exclude: excl("a")}, want: "x=2,b=1"},
		{name: "zset default list", sc: zset, req: backend.Request{UserID: "nobody", K: 5}, want: "p1=3,p2=2"},
		{name: "zset not found", sc: zsetNoDefault, req: backend.Request{UserID: "nobody", K: 5}, class: backend.ClassNotFound},
		{name: "zset candidates", sc: zset, req: backend.Request{UserID: "u1", K: 10, Candidates: []string{"e", "zz", "b", "c"}}, want: "b=0.8,c=0.7,e=0.5"},
		{name: "zset candidates k", sc: zset, req: backend.Request{UserID: "u1", K: 1, Candidates: []string{"e", "b"}}, want: "b=0.8"},
		{name: "zset candidates none scored", sc: zset, req: backend.Request{UserID: "u1", K: 3, Candidates: []string{"zz"}}, want: ""},
		{name: "zset candidates from default", sc: zset, req: backend.Request{UserID: "nobody", K: 3, Candidates: []string{"p2", "a"}}, want: "p2=2"},
		{name: "zset no candidates left", sc: zsetNoDefault, req: backend.Request{UserID: "nobody", K: 3, Candidates: []string{}}, want: ""},
		{name: "context key", sc: zsetCtx, req: backend.Request{UserID: "u1", Context: map[string]string{"surface": "music"}, K: 3}, want: "song=1"},
		{name: "context list missing", sc: zsetCtx, req: backend.Request{UserID: "u1", Context: map[string]string{"surface": "home"}, K: 3}, want: "p1=3,p2=2"},
		{name: "context key missing", sc: zsetCtx, req: backend.Request{UserID: "u1", K: 3}, want: "p1=3,p2=2"},
		{name: "zset holds a string", sc: zset, req: backend.Request{UserID: "str", K: 3}, class: backend.ClassBadOutput},
		{name: "zset infinite score", sc: zset, req: backend.Request{UserID: "inf", K: 3}, class: backend.ClassBadOutput},
		{name: "json ranks and dedupes", sc: js, req: backend.Request{UserID: "u1", K: 10}, want: "b=0.9,a=0.5,c=0.5"},
		{name: "json k and exclude", sc: js, req: backend.Request{UserID: "u1", K: 1, Exclude: excl("b")}, want: "a=0.5"},
		{name: "json candidates", sc: js, req: backend.Request{UserID: "u1", K: 10, Candidates: []string{"c", "zz"}}, want: "c=0.5"},
		{name: "json default list", sc: js, req: backend.Request{UserID: "nobody", K: 10}, want: "p=1"},
		{name: "json empty list", sc: js, req: backend.Request{UserID: "empty", K: 10}, want: ""},
		{name: "json not found", sc: jsNoDefault, req: backend.Request{UserID: "nobody", K: 10}, class: backend.ClassNotFound},
		{name: "json malformed", sc: js, req: backend.Request{UserID: "bad", K: 10}, class: backend.ClassBadOutput},
		{name: "json unknown member", sc: js, req: backend.Request{UserID: "extra", K: 10}, class: backend.ClassBadOutput},
		{name: "json too large", sc: js, req: backend.Request{UserID: "big", K: 10}, class: backend.ClassBadOutput},
		{name: "json holds a zset", sc: js, req: backend.Request{UserID: "zset", K: 10}, class: backend.ClassBadOutput},
		{name: "k below 1", sc: zset, req: backend.Request{UserID: "u1", K: 0}, class: backend.ClassRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			items, err := tc.sc.Predict(ctx, &tc.req)
			if tc.class != "" {
				if c := backend.Classify(err); c != tc.class {
					t.Fatalf("got %v (%s), %v; want class %s", items, c, err, tc.class)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if items == nil || ids(items) != tc.want {
				t.Fatalf("got %q (nil: %v), want %q", ids(items), items == nil, tc.want)
			}
		})
	}
}

// A sorted set of 100,000 members is read only as far as k and exclude
// need, and equal scores rank by id whatever Redis's own order.
func TestPredictLargeSet(t *testing.T) {
	srv, rdb := startRedis(t)
	ctx := context.Background()
	zs := make([]redis.Z, 100_000)
	for i := range zs {
		zs[i] = redis.Z{Member: fmt.Sprintf("i%06d", i), Score: float64(i % 10)}
	}
	if err := rdb.ZAdd(ctx, "big:u1", zs...).Err(); err != nil {
		t.Fatal(err)
	}
	sc := load(t, redislist.NewDriver(srv.URL()), `{"type": "redis", "key": "big:{user_id}"}`)
	items, err := sc.Predict(ctx, &backend.Request{UserID: "u1", K: 3, Exclude: map[string]struct{}{"i000009": {}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(items); got != "i000019=9,i000029=9,i000039=9" {
		t.Fatalf("got %s", got)
	}
	// More candidates than the script scores in one ZMSCORE, some of
	// them not in the set.
	cands := make([]string, 1200)
	for i := range cands {
		cands[i] = fmt.Sprintf("i%06d", 99_000+i) // 99,000..100,199
	}
	items, err = sc.Predict(ctx, &backend.Request{UserID: "u1", K: 1000, Candidates: cands})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1000 || items[0].ID != "i099009" || items[0].Score != 9 || items[999].Score != 0 {
		t.Fatalf("got %d items, first %v, last %v", len(items), items[0], items[len(items)-1])
	}
	for _, it := range items {
		if it.ID >= "i100000" {
			t.Fatalf("%s is not in the set but was returned", it.ID)
		}
	}
}

func TestRegistration(t *testing.T) {
	srv, rdb := startRedis(t)
	zadd(t, rdb, "pop", "a", 1.0)
	set(t, rdb, "pop:json", `[{"id": "a", "score": 1}]`)
	set(t, rdb, "pop:badjson", `{"id": "a"}`)
	down := redistest.UnusedURL(t)
	tests := []struct {
		name, section string
		field, msg    string // "" when registered
	}{
		{name: "no default", section: `{"type": "redis", "key": "r:{user_id}"}`},
		{name: "zset default", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "pop"}`},
		{name: "json default", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "pop:json", "format": "json"}`},
		{name: "default from the context is not checked", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "pop:{context.country}"}`},
		{name: "server down", section: `{"type": "redis", "url": "` + down + `", "key": "r:{user_id}"}`, field: "backend.url", msg: "does not answer"},
		{name: "default missing", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "nope"}`, field: "backend.default_key", msg: "does not exist"},
		{name: "default is a string", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "pop:json"}`, field: "backend.default_key", msg: "holds a string"},
		{name: "default is a zset", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "pop", "format": "json"}`, field: "backend.default_key", msg: "holds a zset"},
		{name: "default is bad json", section: `{"type": "redis", "key": "r:{user_id}", "default_key": "pop:badjson", "format": "json"}`, field: "backend.default_key", msg: "not a JSON array"},
	}
	d := redislist.NewDriver(srv.URL())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := d.Load(context.Background(), parse(t, d, tc.section), backend.LoadOptions{Model: "m", Version: "1", Validate: true})
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !sc.(backend.Health).Healthy() {
					t.Fatal("a validated version is not healthy")
				}
				_ = sc.(*redislist.List).Close()
				return
			}
			f := fault.As(err)
			if f == nil || f.Code != "invalid_model" || f.Field != tc.field || !strings.Contains(f.Error(), tc.msg) {
				t.Fatalf("got %v, want invalid_model on %s mentioning %q", err, tc.field, tc.msg)
			}
		})
	}
}

// At start-up a version loads whatever Redis does; it is healthy while
// Redis answers PING, a lookup that finds Redis gone fails as unavailable
// and makes it unhealthy at once, and it is healthy again once Redis is
// back.
func TestHealth(t *testing.T) {
	srv, rdb := startRedis(t)
	zadd(t, rdb, "r:u1", "a", 1.0)
	srv.Stop()
	d := redislist.NewDriver(srv.URL())
	cfg := parse(t, d, `{"type": "redis", "key": "r:{user_id}"}`)
	sc, err := d.Load(context.Background(), cfg, backend.LoadOptions{Model: "m", Version: "1"})
	if err != nil {
		t.Fatalf("load with Redis down: %v", err)
	}
	defer sc.(*redislist.List).Close()
	h := sc.(backend.Health)
	if h.Healthy() {
		t.Fatal("healthy with Redis down")
	}
	req := &backend.Request{UserID: "u1", K: 1}
	if _, err := sc.Predict(context.Background(), req); backend.Classify(err) != backend.ClassUnavailable {
		t.Fatalf("lookup with Redis down: %v, want unavailable", err)
	}
	srv.Restart() // no AOF: the list is gone, which this test does not need
	testenv.WaitFor(t, 3*redislist.HealthInterval, h.Healthy)
	zadd(t, rdb, "r:u1", "a", 1.0)
	if items, err := sc.Predict(context.Background(), req); err != nil || ids(items) != "a=1" {
		t.Fatalf("after restart: %v, %v", items, err)
	}
	srv.Stop()
	if _, err := sc.Predict(context.Background(), req); backend.Classify(err) != backend.ClassUnavailable {
		t.Fatalf("lookup after Redis went away: %v, want unavailable", err)
	}
	if h.Healthy() {
		t.Fatal("still healthy after a lookup found Redis gone")
	}
}

// A lookup ends at its context's deadline even when Redis is busy.
func TestDeadline(t *testing.T) {
	srv, rdb := startRedis(t)
	zadd(t, rdb, "r:u1", "a", 1.0)
	sc := load(t, redislist.NewDriver(srv.URL()), `{"type": "redis", "key": "r:{user_id}", "timeout_ms": 50}`)
	// The server holds every client's commands for 500 ms from the moment
	// CLIENT PAUSE returns: the lookup below is certain to wait.
	if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", "500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sc.Predict(ctx, &backend.Request{UserID: "u1", K: 1})
	if took := time.Since(start); backend.Classify(err) != backend.ClassDeadline || took > 300*time.Millisecond {
		t.Fatalf("got %v after %v, want a deadline error within the deadline", err, took)
	}
}

// A stored list written by encoding/json, as a batch job in Go would
// write it, decodes to the same items.
func TestJSONFromEncoder(t *testing.T) {
	srv, rdb := startRedis(t)
	want := []backend.Item{{ID: "b", Score: 0.25}, {ID: "é\"x", Score: 0}, {ID: "a", Score: -1e-9}}
	raw, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	set(t, rdb, "j:u1", string(raw))
	sc := load(t, redislist.NewDriver(srv.URL()), `{"type": "redis", "key": "j:{user_id}", "format": "json"}`)
	got, err := sc.Predict(context.Background(), &backend.Request{UserID: "u1", K: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestClassifyDriverErrors(t *testing.T) {
	// A closed list's lookups fail as unavailable, not as a panic.
	srv, _ := startRedis(t)
	d := redislist.NewDriver(srv.URL())
	sc, err := d.Load(context.Background(), parse(t, d, `{"type": "redis", "key": "r:{user_id}"}`), backend.LoadOptions{Model: "m", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.(*redislist.List).Close()
	_, err = sc.Predict(context.Background(), &backend.Request{UserID: "u1", K: 1})
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("after Close: %v, want unavailable", err)
	}
}

// BenchmarkPredict is one lookup against a local redis-server: the top 10
// of a 1,000-item sorted set, or 50 candidates' scores, or the top 10 of
// a 1,000-item JSON list.
func BenchmarkPredict(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	zs := make([]redis.Z, 1000)
	items := make([]backend.Item, 1000)
	for i := range zs {
		id := fmt.Sprintf("i%d", i)
		zs[i] = redis.Z{Member: id, Score: float64(i) / 1000}
		items[i] = backend.Item{ID: id, Score: float64(i) / 1000}
	}
	if err := rdb.ZAdd(ctx, "z:u1", zs...).Err(); err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(items)
	if err := rdb.Set(ctx, "j:u1", raw, 0).Err(); err != nil {
		b.Fatal(err)
	}
	d := redislist.NewDriver(srv.URL())
	cands := make([]string, 50)
	for i := range cands {
		cands[i] = fmt.Sprintf("i%d", i*20)
	}
	for _, bc := range []struct {
		name, section string
		req           backend.Request
	}{
		{"zset-top10", `{"type": "redis", "key": "z:{user_id}"}`, backend.Request{UserID: "u1", K: 10}},
		{"zset-candidates50", `{"type": "redis", "key": "z:{user_id}"}`, backend.Request{UserID: "u1", K: 10, Candidates: cands}},
		{"json1000-top10", `{"type": "redis", "key": "j:{user_id}", "format": "json"}`, backend.Request{UserID: "u1", K: 10}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, cfg, err := backend.NewDrivers(d).Parse([]byte(bc.section))
			if err != nil {
				b.Fatal(err)
			}
			sc, err := d.Load(ctx, cfg, backend.LoadOptions{Model: "m", Version: "1", Validate: true})
			if err != nil {
				b.Fatal(err)
			}
			defer sc.(*redislist.List).Close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sc.Predict(ctx, &bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A rediss:// url reaches Redis over TLS, verifying its certificate
// against the system's roots, to which SSL_CERT_FILE adds the test's CA.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	leaf := ca.Server(t, "redis", 2)
	// Go reads the system roots once per process, at the first
	// verification: no other test of this package verifies a certificate.
	t.Setenv("SSL_CERT_FILE", ca.File)
	u, err := url.Parse(redistest.UnusedURL(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t, redistest.Options{Args: []string{"--tls-port", u.Port(),
		"--tls-cert-file", leaf.CertFile, "--tls-key-file", leaf.KeyFile, "--tls-ca-cert-file", ca.File,
		"--tls-auth-clients", "no"}})
	zadd(t, srv.Client(), "r:u1", "a", 1.0)
	tlsURL := "rediss://" + u.Host + "/0"
	sc := load(t, redislist.NewDriver(""), `{"type": "redis", "url": "`+tlsURL+`", "key": "r:{user_id}"}`)
	items, err := sc.Predict(context.Background(), &backend.Request{UserID: "u1", K: 1})
	if err != nil || ids(items) != "a=1" {
		t.Fatalf("over TLS: %v, %v", items, err)
	}
	// Plain Redis on the TLS port does not answer.
	d := redislist.NewDriver("")
	_, err = d.Load(context.Background(), parse(t, d, `{"type": "redis", "url": "redis://`+u.Host+`/0", "key": "r:{user_id}"}`),
		backend.LoadOptions{Model: "m", Version: "1", Validate: true})
	if f := fault.As(err); f == nil || f.Field != "backend.url" {
		t.Fatalf("plain redis:// to the TLS port: %v, want invalid_model on backend.url", err)
	}
}

// Lookups from many goroutines, on versions sharing a client, each get
// their own user's list.
func TestConcurrentLookups(t *testing.T) {
	srv, rdb := startRedis(t)
	for u := range 8 {
		zadd(t, rdb, fmt.Sprintf("r:u%d", u), fmt.Sprintf("item%d", u), float64(u))
	}
	d := redislist.NewDriver(srv.URL())
	zl := load(t, d, `{"type": "redis", "key": "r:{user_id}"}`)
	zl2 := load(t, d, `{"type": "redis", "key": "r:{user_id}", "timeout_ms": 100}`)
	errs := make(chan error, 8)
	for u := range 8 {
		go func() {
			sc := []backend.Scorer{zl, zl2}[u%2]
			for range 200 {
				items, err := sc.Predict(context.Background(), &backend.Request{UserID: fmt.Sprintf("u%d", u), K: 1})
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf("item%d=%d", u, u); ids(items) != want {
					errs <- fmt.Errorf("user u%d got %s, want %s", u, ids(items), want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
