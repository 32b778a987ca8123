package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/store"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, h := auth.Generate()
		if len(k) != 46 || !strings.HasPrefix(k, "mg_") || !auth.WellFormed(k) {
			t.Fatalf("bad key %q (%d chars)", k, len(k))
		}
		if auth.Sum(k) != h {
			t.Fatal("hash is not the key's SHA-256")
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
	}
	if auth.WellFormed("mg_short") || auth.WellFormed("xx_"+strings.Repeat("a", 43)) || auth.WellFormed("mg_"+strings.Repeat("-", 43)) {
		t.Fatal("malformed keys accepted")
	}
}

func TestAllowed(t *testing.T) {
	needs := []string{auth.ScopeClient, auth.ScopeML, auth.ScopeAnalyst, auth.ScopeAdmin}
	want := map[string][]string{ // scope -> what it may do
		auth.ScopeClient:  {auth.ScopeClient},
		auth.ScopeML:      {auth.ScopeML, auth.ScopeAnalyst},
		auth.ScopeAnalyst: {auth.ScopeAnalyst},
		auth.ScopeAdmin:   needs,
	}
	for scope, may := range want {
		for _, need := range needs {
			exp := false
			for _, m := range may {
				exp = exp || m == need
			}
			if got := auth.Allowed([]string{scope}, need); got != exp {
				t.Errorf("Allowed(%s, %s) = %v, want %v", scope, need, got, exp)
			}
		}
	}
	if !auth.Allowed([]string{"client", "analyst"}, "analyst") || auth.Allowed(nil, "client") {
		t.Error("several scopes")
	}
	if g := auth.Grantors("analyst"); strings.Join(g, ",") != "analyst,ml,admin" {
		t.Errorf("grantors %v", g)
	}
}

func TestKeysLookupCreateRevoke(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	plain, k, err := auth.Create(ctx, db, auth.Key{Name: "app1", Scopes: []string{"client"}, Rate: 5}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if k.Burst != 5 {
		t.Fatalf("default burst %d", k.Burst)
	}
	if _, _, err := auth.Create(ctx, db, auth.Key{Name: "app1", Scopes: []string{"client"}}, time.Now()); err != auth.ErrExists {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, bad := range []auth.Key{{Name: "", Scopes: []string{"client"}}, {Name: "x", Scopes: []string{"root"}},
		{Name: "x"}, {Name: "x", Scopes: []string{"ml"}, Burst: 3}, {Name: "a b", Scopes: []string{"ml"}}} {
		if _, _, err := auth.Create(ctx, db, bad, time.Now()); !auth.IsInvalid(err) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	keys, err := auth.NewKeys(ctx, db, nil, auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keys.Lookup(plain); got == nil || got.Name != "app1" {
		t.Fatalf("lookup: %+v", got)
	}
	other, _ := auth.Generate()
	if keys.Lookup(other) != nil || keys.Lookup("") != nil || keys.Lookup(plain+"x") != nil {
		t.Fatal("unknown key accepted")
	}
	keys.Flush(ctx)
	all, err := keys.List(ctx)
	if err != nil || len(all) != 1 || all[0].LastUsed.IsZero() {
		t.Fatalf("last use not recorded: %+v %v", all, err)
	}
	// A key created by Create on the cache works at once.
	p2, _, err := keys.Create(ctx, auth.Key{Name: "ops", Scopes: []string{"admin"}})
	if err != nil || keys.Lookup(p2) == nil {
		t.Fatalf("created key not usable: %v", err)
	}
	ok, err := keys.Revoke(ctx, "app1")
	if err != nil || !ok || keys.Lookup(plain) != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	if ok, _ := keys.Revoke(ctx, "app1"); ok {
		t.Fatal("revoked twice")
	}
}

func TestKeysRunSeesOtherWriters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := auth.NewKeys(ctx, db, nil, auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go keys.Run(ctx, nil)
	plain, _, err := auth.Create(ctx, db, auth.Key{Name: "x", Scopes: []string{"ml"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for keys.Lookup(plain) == nil {
		if time.Now().After(deadline) {
			t.Fatal("new key not seen within 1 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := db.DeleteKey(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Second)
	for keys.Lookup(plain) != nil {
		if time.Now().After(deadline) {
			t.Fatal("revocation not seen within 1 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// touchStore records the deadline of each TouchKeys and, when hang is set,
// answers it only when its context ends: a store that stopped answering.
type touchStore struct {
	auth.Store
	hang      bool
	deadlines chan time.Time
}

func (s *touchStore) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	d, _ := ctx.Deadline()
	s.deadlines <- d
	if s.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.TouchKeys(ctx, used)
}

// Run's last write of last-use times ends by the deadline of
// KeysOptions.FinalContext, so that a server's shutdown is not held by a
// store that hangs, and never later than FlushTimeout, as without it.
func TestKeysRunFinalFlushDeadline(t *testing.T) {
	const margin = 500 * time.Millisecond // scheduling on a busy machine under -race
	for _, tc := range []struct {
		name  string
		final time.Duration // deadline of FinalContext from the start; 0: no FinalContext
		hang  bool
		want  time.Duration // deadline of the write from the start
	}{
		{"final context bounds a hanging store", 300 * time.Millisecond, true, 300 * time.Millisecond},
		{"no final context", 0, false, auth.FlushTimeout},
		{"final context later than FlushTimeout", time.Hour, false, auth.FlushTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := store.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			plain, _, err := auth.Create(context.Background(), db, auth.Key{Name: "app1", Scopes: []string{"client"}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			st := &touchStore{Store: db, hang: tc.hang, deadlines: make(chan time.Time, 1)}
			start := time.Now()
			var opts auth.KeysOptions
			if tc.final > 0 {
				fctx, cancel := context.WithDeadline(context.Background(), start.Add(tc.final))
				defer cancel()
				opts.FinalContext = func() context.Context { return fctx }
			}
			keys, err := auth.NewKeys(context.Background(), st, nil, opts)
			if err != nil {
				t.Fatal(err)
			}
			if keys.Lookup(plain) == nil {
				t.Fatal("key not found")
			}
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { keys.Run(ctx, nil); close(done) }()
			stop() // before the first TouchInterval: the last write is the only one
			select {
			case <-done:
			case <-time.After(tc.want + margin):
				t.Fatalf("Run did not return within %v", tc.want+margin)
			}
			var got time.Time
			select {
			case got = <-st.deadlines:
			default:
				t.Fatal("Run did not write the last-use times")
			}
			if d := got.Sub(start); d < tc.want-margin || d > tc.want+margin {
				t.Fatalf("last write's deadline %v after the start, want %v", d.Round(time.Millisecond), tc.want)
			}
			if tc.hang {
				return
			}
			all, err := db.ListKeys(context.Background())
			if err != nil || len(all) != 1 || all[0].LastUsed.IsZero() {
				t.Fatalf("last use not recorded: %+v %v", all, err)
			}
		})
	}
}

func TestLocalLimiter(t *testing.T) {
	l := auth.NewLocalLimiter()
	k := &auth.Key{Name: "k", Rate: 50, Burst: 10}
	k.Hash = auth.Sum("k")
	ctx := context.Background()
	okN := 0
	var retry time.Duration
	for range 20 {
		if ok, r := l.AllowN(ctx, k, 1); ok {
			okN++
		} else {
			retry = r
		}
	}
	if okN < 10 || okN > 11 || retry <= 0 || retry > 25*time.Millisecond {
		t.Fatalf("burst: %d allowed, retry %v", okN, retry)
	}
	if ok, _ := l.AllowN(ctx, &auth.Key{Name: "free"}, 1); !ok {
		t.Fatal("a key without a rate is limited")
	}
}

type fakeTaker struct {
	calls int
	fail  bool
	l     *auth.LocalLimiter
}

func (f *fakeTaker) TakeTokens(ctx context.Context, _ string, rate float64, burst, n int) (int, time.Duration, error) {
	f.calls++
	if f.fail {
		return 0, 0, context.DeadlineExceeded
	}
	k := &auth.Key{Rate: rate, Burst: burst}
	got := 0
	for range n {
		ok, retry := f.l.AllowN(ctx, k, 1)
		if !ok {
			if got == 0 {
				return 0, retry, nil
			}
			break
		}
		got++
	}
	return got, 0, nil
}

func TestSharedLimiterLeases(t *testing.T) {
	ft := &fakeTaker{l: auth.NewLocalLimiter()}
	l := auth.NewSharedLimiter(ft)
	k := &auth.Key{Name: "k", Hash: auth.Sum("k"), Rate: 1000, Burst: 400}
	ctx := context.Background()
	for range 100 {
		if ok, _ := l.AllowN(ctx, k, 1); !ok {
			t.Fatal("denied within the burst")
		}
	}
	// Leases of 5% of the rate: 50 tokens a round trip.
	if ft.calls != 2 {
		t.Fatalf("%d round trips for 100 requests", ft.calls)
	}
	// When the taker fails, the local bucket limits.
	ft.fail = true
	k2 := &auth.Key{Name: "k2", Hash: auth.Sum("k2"), Rate: 1, Burst: 2}
	n := 0
	for range 5 {
		if ok, _ := l.AllowN(ctx, k2, 1); ok {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("fallback allowed %d of 5 at burst 2", n)
	}
}

// A batch of n entries takes n tokens, or none; n above the burst takes
// the whole burst.
func TestLimitersAllowN(t *testing.T) {
	ctx := context.Background()
	limiters := map[string]func() auth.Limiter{
		"local":  func() auth.Limiter { return auth.NewLocalLimiter() },
		"shared": func() auth.Limiter { return auth.NewSharedLimiter(&fakeTaker{l: auth.NewLocalLimiter()}) },
	}
	for name, mk := range limiters {
		t.Run(name, func(t *testing.T) {
			l := mk()
			k := &auth.Key{Name: "k", Hash: auth.Sum("k"), Rate: 1, Burst: 10}
			if ok, _ := l.AllowN(ctx, k, 4); !ok {
				t.Fatal("4 of a full bucket of 10 denied")
			}
			ok, retry := l.AllowN(ctx, k, 7)
			if ok || retry <= 0 || retry > 2*time.Second {
				t.Fatalf("7 of the 6 left: %v, retry %v; want denied, about a second", ok, retry)
			}
			l = mk() // the fake shared bucket is one for all keys
			big := &auth.Key{Name: "big", Hash: auth.Sum("big"), Rate: 1, Burst: 10}
			if ok, _ := l.AllowN(ctx, big, 256); !ok {
				t.Fatal("a batch above the burst denied on a full bucket")
			}
			if ok, _ := l.AllowN(ctx, big, 1); ok {
				t.Fatal("the batch above the burst left tokens in the bucket")
			}
			if ok, _ := l.AllowN(ctx, &auth.Key{Name: "free"}, 1000); !ok {
				t.Fatal("a key without a rate is limited")
			}
		})
	}
}
