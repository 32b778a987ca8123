package redislist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/internal/redistest"
)

// countHook counts the round trips of a client's requests: a command, or
// a pipeline of them.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// Not the health poll's PING, nor the HELLO that opens a new
		// connection of the pool.
		if n := cmd.Name(); n != "ping" && n != "hello" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// Every lookup is one command on the wire, whichever list it ends up
// reading, once the server has the script.
func TestOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := NewDriver(srv.URL())
	load := func(section string) *List {
		_, cfg, err := backend.NewDrivers(d).Parse([]byte(section))
		if err != nil {
			t.Fatal(err)
		}
		sc, err := d.Load(context.Background(), cfg, backend.LoadOptions{Model: "m", Version: "1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sc.(*List).Close() })
		return sc.(*List)
	}
	zl := load(`{"type": "redis", "key": "z:{user_id}", "default_key": "z:popular"}`)
	jl := load(`{"type": "redis", "key": "j:{user_id}", "default_key": "j:popular", "format": "json"}`)
	if zl.conn != jl.conn {
		t.Fatal("two versions on one URL do not share its client")
	}
	ctx := context.Background()
	rdb := zl.conn.rdb
	rdb.ZAdd(ctx, "z:u1", redis.Z{Member: "a", Score: 1})
	rdb.ZAdd(ctx, "z:popular", redis.Z{Member: "p", Score: 1})
	rdb.Set(ctx, "j:u1", `[{"id": "a", "score": 1}]`, 0)
	rdb.Set(ctx, "j:popular", `[{"id": "p", "score": 1}]`, 0)
	if err := d.script.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	hook := &countHook{}
	rdb.AddHook(hook)
	reqs := []struct {
		l   *List
		req backend.Request
	}{
		{zl, backend.Request{UserID: "u1", K: 5}},
		{zl, backend.Request{UserID: "nobody", K: 5}},
		{zl, backend.Request{UserID: "nobody", K: 5, Candidates: []string{"p", "q"}}},
		{jl, backend.Request{UserID: "u1", K: 5}},
		{jl, backend.Request{UserID: "nobody", K: 5, Candidates: []string{"p"}}},
	}
	for i, r := range reqs {
		before := hook.n.Load()
		items, err := r.l.Predict(ctx, &r.req)
		if err != nil || len(items) != 1 {
			t.Fatalf("request %d: %v, %v", i, items, err)
		}
		if n := hook.n.Load() - before; n != 1 {
			t.Fatalf("request %d took %d round trips", i, n)
		}
	}
}

// The last version using a URL closes its client and joins its health
// poll; a new version on that URL gets a new client.
func TestPoolRelease(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var p pool
	url := "redis://" + l.Addr().String() + "/0"
	a, releaseA, err := p.acquire(url)
	if err != nil {
		t.Fatal(err)
	}
	b, releaseB, err := p.acquire(url)
	if err != nil || a != b {
		t.Fatalf("second acquire: %v, shared %v", err, a == b)
	}
	other, releaseOther, err := p.acquire(url + "?protocol=2")
	if err != nil || other == a {
		t.Fatalf("another URL: %v, shared %v", err, other == a)
	}
	releaseA()
	releaseA() // twice is once
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.rdb.Ping(ctx).Err(); errors.Is(err, redis.ErrClosed) {
		t.Fatal("released while a version still uses it")
	}
	releaseB() // returns once the health poll has ended
	if err := a.rdb.Ping(context.Background()).Err(); err != redis.ErrClosed {
		t.Fatalf("client after the last release: %v, want closed", err)
	}
	c, releaseC, _ := p.acquire(url)
	if c == a {
		t.Fatal("a closed client was handed out again")
	}
	releaseC()
	releaseOther()
	if len(p.clients) != 0 {
		t.Fatalf("%d clients left", len(p.clients))
	}
	if _, _, err := p.acquire("http://x"); err == nil {
		t.Fatal("a bad URL was accepted")
	}
}

// A batch is one round trip (after a SCRIPT FLUSH, the script is loaded
// once more first) and answers each request as Predict would; a request
// without any list makes it ErrNotStackable, so each is answered alone.
func TestPredictBatch(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := NewDriver(srv.URL())
	_, cfg, err := backend.NewDrivers(d).Parse([]byte(`{"type": "redis", "key": "z:{context.s}:{user_id}", "default_key": "z:popular"}`))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := d.Load(context.Background(), cfg, backend.LoadOptions{Model: "m", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	l := sc.(*List)
	defer l.Close()
	ctx := context.Background()
	rdb := l.conn.rdb
	rdb.ZAdd(ctx, "z:a:u1", redis.Z{Member: "a", Score: 2}, redis.Z{Member: "b", Score: 1})
	rdb.ZAdd(ctx, "z:popular", redis.Z{Member: "p", Score: 1})
	reqs := []*backend.Request{
		{UserID: "u1", Context: map[string]string{"s": "a"}, K: 5},
		{UserID: "u1", Context: map[string]string{"s": "a"}, K: 5, Candidates: []string{"b", "x"}},
		{UserID: "u2", Context: map[string]string{"s": "a"}, K: 5},
		{UserID: "u1", K: 5, Candidates: []string{}},
	}
	var want [][]backend.Item
	for _, r := range reqs {
		items, err := l.Predict(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, items)
	}
	hook := &countHook{}
	rdb.AddHook(hook)
	for _, flush := range []bool{false, true} {
		if flush {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		before := hook.n.Load()
		got, err := l.PredictBatch(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		if n := hook.n.Load() - before; (!flush && n != 1) || (flush && n != 3) {
			t.Fatalf("flushed %v: %d round trips", flush, n)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("batch %v, one by one %v", got, want)
		}
	}
	l2, err := d.Load(ctx, cfg, backend.LoadOptions{Model: "m", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.(*List).Close()
	rdb.Del(ctx, "z:popular")
	if _, err := l.PredictBatch(ctx, reqs); !errors.Is(err, backend.ErrNotStackable) || !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("a request without a list: %v, want not stackable (not found)", err)
	}
}
