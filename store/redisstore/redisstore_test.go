package redisstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/acklog"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/storetest"
)

// fastOpts keep outage tests quick: frequent checks. The write deadline is
// generous so that a loaded CI machine does not send a write that should
// reach Redis to the log; tests of a slow Redis shorten it.
func fastOpts(dir string) Options {
	return Options{WALDir: dir, CheckInterval: 20 * time.Millisecond, OpTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
}

// onlineOpts are for tests that expect every write to reach Redis at once.
func onlineOpts() Options {
	return Options{OpTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
}

func openStore(t testing.TB, url string, opt Options) *Store {
	t.Helper()
	if opt.WALDir == "" {
		opt.WALDir = t.TempDir()
	}
	s, err := Open(context.Background(), url, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countsOf(t testing.TB, s *Store) map[counters.Key][2]uint64 {
	t.Helper()
	es, err := s.LoadCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[counters.Key][2]uint64{}
	for _, e := range es {
		m[e.Key] = [2]uint64{e.Trials, e.Successes}
	}
	return m
}

var (
	kA = counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	kB = counters.Key{Endpoint: "home", Segment: "surface=music", Arm: "mf@2"}
)

func click(ev, pred string, k counters.Key) store.FeedbackOp {
	return store.FeedbackOp{Prediction: pred, Event: "click\x00" + ev, Item: ev, Success: true, Counter: k, Expires: time.Now().Add(time.Hour)}
}

func impression(pred string, k counters.Key) store.FeedbackOp {
	return store.FeedbackOp{Prediction: pred, Event: "impression\x00", Trial: true, Counter: k, Expires: time.Now().Add(time.Hour)}
}

// limited is a click of pred on item, whose prediction accepts events for
// at most two distinct items.
func limited(item, pred string, k counters.Key) store.FeedbackOp {
	op := click(item, pred, k)
	op.MaxItems = 2
	return op
}

func TestRegistryMetaAndSubscribe(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	a := openStore(t, srv.URL(), Options{})
	b := openStore(t, srv.URL(), Options{})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := b.Subscribe(sctx)
	time.Sleep(50 * time.Millisecond) // let the subscription reach the server
	expect := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(2 * time.Second):
			t.Fatalf("no change signal after %s", what)
		}
	}

	if err := a.Put(ctx, store.Models, "mf@1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	expect("another replica's Put")
	if m, err := b.List(ctx, store.Models); err != nil || string(m["mf@1"]) != `{"a":1}` {
		t.Fatalf("List on the other replica = %q, %v", m, err)
	}
	if err := a.Delete(ctx, store.Models, "mf@1"); err != nil {
		t.Fatal(err)
	}
	expect("another replica's Delete")
	if err := a.Delete(ctx, store.Models, "never-there"); err != nil {
		t.Fatalf("deleting a missing record: %v", err)
	}
	if m, _ := b.List(ctx, store.Models); len(m) != 0 {
		t.Fatalf("after Delete, List = %q", m)
	}
	if m, err := b.List(ctx, store.Endpoints); err != nil || len(m) != 0 {
		t.Fatalf("empty bucket: %q, %v", m, err)
	}

	if v, err := a.Meta(ctx, "seeded/model/mf@1"); err != nil || v != nil {
		t.Fatalf("unset Meta = %q, %v; want nil, nil", v, err)
	}
	if err := a.SetMeta(ctx, "seeded/model/mf@1", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Meta(ctx, "seeded/model/mf@1"); err != nil || string(v) != "1" {
		t.Fatalf("Meta on the other replica = %q, %v", v, err)
	}

	// After Redis restarts, the subscription comes back by itself, and
	// says so, since changes may have been missed while it was down.
	for len(changed) > 0 {
		<-changed
	}
	srv.Restart()
	expect("re-subscribing after a Redis restart")
	waitFor(t, "the writer to reconnect", 5*time.Second, func() bool {
		return a.Put(ctx, store.Endpoints, "home", []byte("{}")) == nil
	})
	expect("a Put after the restart")

	cancel()
	select {
	case _, ok := <-changed:
		for ok {
			_, ok = <-changed
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the channel was not closed when ctx ended")
	}
}

func TestSigningKeyIdenticalAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const replicas = 6
	keys := make([][]byte, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		s := openStore(t, srv.URL(), Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.SigningKey(context.Background())
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for i, k := range keys {
		if len(k) != 32 || string(k) != string(keys[0]) {
			t.Fatalf("replica %d got key %x, replica 0 %x", i, k, keys[0])
		}
	}
}

// TestReplicasCountExactly has several Stores (replicas) add trials and
// apply feedback concurrently, with every event sent to two replicas.
func TestReplicasCountExactly(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	const replicas, workers, rounds, preds = 3, 4, 40, 5
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openStore(t, srv.URL(), onlineOpts())
	}
	var (
		wg                        sync.WaitGroup
		mu                        sync.Mutex
		reportedT, reportedS, dup int
	)
	for r := range replicas {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range rounds {
					if err := stores[r].AddTrials(ctx, map[counters.Key]uint64{kA: 2, kB: 1}); err != nil {
						t.Error(err)
						return
					}
					// Worker w of every replica sends the same events: each
					// prediction gets a click on two items and an impression.
					var ops []store.FeedbackOp
					for p := range preds {
						pred := fmt.Sprintf("w%di%dp%d", w, i, p)
						ops = append(ops, click("a", pred, kB), click("b", pred, kB), impression(pred, kA))
					}
					res, err := stores[(r+i)%replicas].ApplyFeedback(ctx, ops, map[counters.Key]uint64{kA: 1})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, x := range res {
						if x.Trial {
							reportedT++
						}
						if x.Success {
							reportedS++
						}
						if x.Duplicate {
							dup++
						}
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	uniquePreds := workers * rounds * preds
	wantA := uint64(replicas*workers*rounds*(2+1) + uniquePreds)
	wantB := uint64(replicas * workers * rounds)
	got := countsOf(t, stores[0])
	if got[kA] != [2]uint64{wantA, 0} || got[kB] != [2]uint64{wantB, uint64(uniquePreds)} {
		t.Fatalf("counters %v; want %v trials on A, %v trials and %d successes on B", got, wantA, wantB, uniquePreds)
	}
	if reportedT != uniquePreds || reportedS != uniquePreds || dup != (replicas-1)*uniquePreds*3 {
		t.Fatalf("results reported %d trials, %d successes, %d duplicates; want %d, %d, %d",
			reportedT, reportedS, dup, uniquePreds, uniquePreds, (replicas-1)*uniquePreds*3)
	}
}

// TestBatchAppliedOnce applies one batch id twice, as a replay after a
// timed-out first attempt does: the second run changes nothing and answers
// what the first did.
func TestBatchAppliedOnce(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	s := openStore(t, srv.URL(), onlineOpts())
	b := newBatch(true, map[counters.Key]uint64{kA: 3}, toKeyOps([]store.FeedbackOp{click("i1", "p1", kA), click("i1", "p1", kA)}), time.Now())
	first, replayed, err := s.apply(ctx, s.admin, b)
	if err != nil || replayed {
		t.Fatalf("first apply: %v, replayed=%v", err, replayed)
	}
	second, replayed, err := s.apply(ctx, s.admin, b)
	if err != nil || !replayed {
		t.Fatalf("second apply: %v, replayed=%v", err, replayed)
	}
	if fmt.Sprint(first) != fmt.Sprint(second) || !first[0].Success || !first[1].Duplicate {
		t.Fatalf("first answer %+v, replayed answer %+v", first, second)
	}
	if got := countsOf(t, s); got[kA] != [2]uint64{3, 1} {
		t.Fatalf("counters %v after applying one batch twice", got)
	}
	// A batch confirmed on its first attempt is released in the background.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	defer rdb.Close()
	if _, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i9", "p9", kA)}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the confirmed batch's record to be released", 2*time.Second, func() bool {
		n, _ := rdb.Keys(ctx, DefaultPrefix+"{home}:batch:*").Result()
		return len(n) == 1 // only the one applied through s.apply, which may be replayed
	})
}

// outageCase describes how Redis goes away in a fault test.
type outageCase struct {
	name  string
	fsync string
}

var outageCases = []outageCase{
	{"aof always", redistest.FsyncAlways},
	{"aof everysec", redistest.FsyncEverySec},
}

func TestOutageWritesGoToWALAndReplayOnce(t *testing.T) {
	for _, tc := range outageCases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: tc.fsync})
			a := openStore(t, srv.URL(), fastOpts(t.TempDir()))
			b := openStore(t, srv.URL(), fastOpts(t.TempDir()))
			// Counted before the outage.
			if _, err := a.ApplyFeedback(ctx, []store.FeedbackOp{click("x", "p0", kA)}, map[counters.Key]uint64{kA: 10}); err != nil {
				t.Fatal(err)
			}

			srv.Stop()
			// The first write may wait out OpTimeout before the store knows.
			start := time.Now()
			if err := a.AddTrials(ctx, map[counters.Key]uint64{kA: 4}); err != nil {
				t.Fatalf("AddTrials with Redis down: %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("AddTrials took %v with Redis down", d)
			}
			if a.Healthy() {
				t.Fatal("Healthy with Redis down")
			}
			steps := []struct {
				s    *Store
				ops  []store.FeedbackOp
				want []store.FeedbackResult
			}{
				// Accepted provisionally: nothing counted locally.
				{a, []store.FeedbackOp{click("i1", "p1", kA), click("i1", "p1", kA), impression("p2", kA)},
					[]store.FeedbackResult{{}, {Duplicate: true}, {}}},
				// Resent to the same replica: a duplicate.
				{a, []store.FeedbackOp{click("i1", "p1", kA)}, []store.FeedbackResult{{Duplicate: true}}},
				// Sent to another replica: accepted there (duplicates are
				// per replica during an outage) but counted once on replay.
				{b, []store.FeedbackOp{click("i1", "p1", kA), click("x", "p0", kA)}, []store.FeedbackResult{{}, {}}},
			}
			for i, st := range steps {
				got, err := st.s.ApplyFeedback(ctx, st.ops, map[counters.Key]uint64{kB: 1})
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if fmt.Sprint(got) != fmt.Sprint(st.want) {
					t.Fatalf("step %d: %+v, want %+v", i, got, st.want)
				}
			}
			if n, bytes := a.Backlog(); n != 3 || bytes <= 0 {
				t.Fatalf("backlog of a = %d, %d; want 3 batches", n, bytes)
			}
			if n, _ := b.Backlog(); n != 1 {
				t.Fatalf("backlog of b = %d, want 1 batch", n)
			}
			if _, err := a.List(ctx, store.Models); err == nil {
				t.Fatal("List with Redis down must fail (the caller keeps its snapshot)")
			}

			srv.Restart()
			waitFor(t, "both logs to replay", 5*time.Second, func() bool {
				na, _ := a.Backlog()
				nb, _ := b.Backlog()
				return na == 0 && nb == 0 && a.Healthy()
			})
			want := map[counters.Key][2]uint64{kA: {10 + 4 + 1, 2}, kB: {3, 0}}
			if got := countsOf(t, a); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("counters after replay %v, want %v", got, want)
			}
			// Back online, Redis decides again.
			got, err := a.ApplyFeedback(ctx, []store.FeedbackOp{click("i1", "p1", kA), click("i1", "p4", kA)}, nil)
			if err != nil || fmt.Sprint(got) != fmt.Sprint([]store.FeedbackResult{{Duplicate: true}, {Success: true}}) {
				t.Fatalf("after replay: %+v, %v", got, err)
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(to, 0o755)
	for _, e := range ents {
		if e.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWALSurvivesRestartAndReplaysOnce writes into the log with Redis down,
// restarts the process (Close, Open) before Redis returns, then replays;
// and replays the same log a second time, as after a crash between
// applying batches and truncating the log.
func TestWALSurvivesRestartAndReplaysOnce(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways})
	dir := t.TempDir()
	srv.Stop()

	s, err := Open(ctx, srv.URL(), fastOpts(dir))
	if err != nil {
		t.Fatalf("Open with Redis down: %v", err)
	}
	if _, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i1", "p1", kA), impression("p2", kB)}, map[counters.Key]uint64{kA: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTrials(ctx, map[counters.Key]uint64{kB: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "wal-copy")
	copyDir(t, dir, backup)

	// The process restarts while Redis is still down.
	s, err = Open(ctx, srv.URL(), fastOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Backlog(); n != 2 {
		t.Fatalf("backlog after reopen = %d, want 2", n)
	}
	res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i1", "p1", kA)}, nil)
	if err != nil || !res[0].Duplicate {
		t.Fatalf("an event logged before the restart, sent again: %+v, %v; want a duplicate", res, err)
	}

	srv.Restart()
	waitFor(t, "the log to replay", 5*time.Second, func() bool { n, _ := s.Backlog(); return n == 0 })
	want := map[counters.Key][2]uint64{kA: {2, 1}, kB: {6, 0}}
	if got := countsOf(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counters after replay %v, want %v", got, want)
	}
	if f := walFiles(t, dir); len(f) != 0 {
		t.Fatalf("replayed segments left on disk: %v", f)
	}
	s.Close()

	// A crash after the batches reached Redis but before the log was
	// truncated: the next start replays them again, and nothing changes.
	copyDir(t, backup, dir)
	s = openStore(t, srv.URL(), fastOpts(dir))
	waitFor(t, "the old log to replay", 5*time.Second, func() bool { n, _ := s.Backlog(); return n == 0 })
	if got := countsOf(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counters after replaying the same log twice %v, want %v", got, want)
	}
	if n := s.again.Load(); n != 2 {
		t.Fatalf("%d replayed batches were found applied already, want both", n)
	}
}

// With Redis down, a write returns only after the fsync of the log record
// holding it (OnWALSync): one at a time, each write's own fsync comes
// between its start and its return; concurrently, every record is in some
// fsync before its write returns. Back online, writes do not touch the log.
func TestOutageWritesFollowWALSync(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name             string
		write            func(s *Store, id string) error
		writers, perEach int
	}{
		{"feedback one at a time", func(s *Store, id string) error {
			_, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", id, kA), impression(id, kB)}, map[counters.Key]uint64{kB: 1})
			return err
		}, 1, 30},
		{"feedback concurrently", func(s *Store, id string) error {
			_, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", id, kA)}, nil)
			return err
		}, 8, 15},
		{"trials one at a time", func(s *Store, _ string) error {
			return s.AddTrials(ctx, map[counters.Key]uint64{kA: 2, kB: 1})
		}, 1, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			var log acklog.Log
			opt := fastOpts(t.TempDir())
			opt.OpTimeout = 200 * time.Millisecond
			opt.OnWALSync = log.Synced
			s := openStore(t, srv.URL(), opt)
			online := func(id string) {
				if err := tc.write(s, id); err != nil {
					t.Fatal(err)
				}
				if n, w := log.Totals(); n != 0 {
					t.Fatalf("with Redis up, %d fsyncs of %d log records", n, w)
				}
			}
			online("before")
			srv.Stop()
			// The first write after the outage may wait out OpTimeout, then
			// goes to the log like the rest.
			// One batch, one record.
			if err := log.Run(tc.writers, tc.perEach, 1, func(id string) error { return tc.write(s, id) }); err != nil {
				t.Fatal(err)
			}
			n := tc.writers * tc.perEach
			if batches, _ := s.Backlog(); batches != n {
				t.Fatalf("backlog of %d batches, want %d", batches, n)
			}
			if syncs, recs := log.Totals(); recs != n || syncs > n {
				t.Fatalf("%d fsyncs held %d records, want %d in at most %d", syncs, recs, n, n)
			}
		})
	}
}

func TestWALFullFailsTheWrite(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	opt := fastOpts(t.TempDir())
	opt.WALMaxBytes = 8 << 10
	s := openStore(t, srv.URL(), opt)
	srv.Stop()
	var err error
	n := 0
	for ; n < 1000 && err == nil; n++ {
		_, err = s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", fmt.Sprintf("p%d", n), kA)}, nil)
	}
	if !errors.Is(err, ErrWALFull) {
		t.Fatalf("after %d writes into an 8 KiB log: %v, want ErrWALFull", n, err)
	}
	// The refused event was not remembered: once there is room, it is new.
	srv.Restart()
	waitFor(t, "the log to drain", 5*time.Second, func() bool { b, _ := s.Backlog(); return b == 0 })
	res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", fmt.Sprintf("p%d", n-1), kA)}, nil)
	if err != nil || res[0].Duplicate || !res[0].Success {
		t.Fatalf("the event refused while the log was full, sent again: %+v, %v", res, err)
	}
	if got := countsOf(t, s); got[kA] != [2]uint64{0, uint64(n)} {
		t.Fatalf("counters %v, want %d successes", got, n)
	}
}

// TestSlowRedisFallsBackWithinDeadline makes Redis stall; writes must still
// return within about OpTimeout, and count exactly once in the end.
func TestSlowRedisFallsBackWithinDeadline(t *testing.T) {
	tests := []struct {
		name  string
		stall []any
	}{
		{"DEBUG SLEEP", []any{"DEBUG", "SLEEP", "2"}},
		{"CLIENT PAUSE WRITE", []any{"CLIENT", "PAUSE", "2000", "WRITE"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t, redistest.Options{})
			opt := fastOpts(t.TempDir())
			opt.OpTimeout, opt.ReadTimeout, opt.WriteTimeout = 100*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
			s := openStore(t, srv.URL(), opt)
			admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true, ReadTimeout: 5 * time.Second})
			defer admin.Close()
			if err := s.AddTrials(ctx, map[counters.Key]uint64{kA: 1}); err != nil { // warm the pool
				t.Fatal(err)
			}
			stalled := make(chan error, 1)
			go func() { stalled <- admin.Do(ctx, tc.stall...).Err() }()
			time.Sleep(50 * time.Millisecond)

			start := time.Now()
			for j := range 3 {
				if err := s.AddTrials(ctx, map[counters.Key]uint64{kA: 10}); err != nil {
					t.Fatal(err)
				}
				res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", fmt.Sprintf("t%dp%d", i, j), kA)}, nil)
				if err != nil || res[0].Duplicate {
					t.Fatalf("feedback during the stall: %+v, %v", res, err)
				}
			}
			// Six writes: the first waits out OpTimeout; after that the store
			// knows Redis is slow and writes to the log until a check or a
			// replay succeeds. None waits for the 2 s stall.
			if d := time.Since(start); d > time.Second {
				t.Fatalf("six writes took %v while Redis stalled", d)
			}
			if err := <-stalled; err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the log to replay", 5*time.Second, func() bool { n, _ := s.Backlog(); return n == 0 })
			// The attempt that timed out may still have run once Redis woke
			// up; its replay then changed nothing.
			t.Logf("logged batches Redis had applied already: %d", s.again.Load())
			if got := countsOf(t, s); got[kA] != [2]uint64{31, 3} {
				t.Fatalf("counters %v, want 31 trials and 3 successes", got[kA])
			}
		})
	}
}

func TestOpenNeedsWALDir(t *testing.T) {
	if _, err := Open(context.Background(), "redis://127.0.0.1:1/0", Options{}); err == nil {
		t.Fatal("Open without WALDir must fail")
	}
	if _, err := Open(context.Background(), "http://x", Options{WALDir: t.TempDir()}); err == nil {
		t.Fatal("Open with a bad URL must fail")
	}
}

func BenchmarkApplyFeedback(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	s := openStore(b, srv.URL(), Options{})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ops := []store.FeedbackOp{click("a", fmt.Sprint(i), kA), impression(fmt.Sprint(i), kB)}
		if _, err := s.ApplyFeedback(ctx, ops, map[counters.Key]uint64{kA: 3}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddTrials(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	s := openStore(b, srv.URL(), Options{})
	ctx := context.Background()
	deltas := map[counters.Key]uint64{kA: 3, kB: 1}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AddTrials(ctx, deltas); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyFeedbackToWAL(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	s := openStore(b, srv.URL(), fastOpts(b.TempDir()))
	srv.Stop()
	ctx := context.Background()
	_ = s.AddTrials(ctx, map[counters.Key]uint64{kA: 1}) // learn that Redis is down
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("a", fmt.Sprint(i), kA)}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLostReplyIsNotCountedTwice: Redis ran a batch but its reply was lost
// (the client's deadline passed first), so the batch also went to the log;
// the replay finds it applied and changes nothing.
func TestLostReplyIsNotCountedTwice(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	s := openStore(t, srv.URL(), fastOpts(t.TempDir()))
	b := newBatch(true, map[counters.Key]uint64{kB: 4}, toKeyOps([]store.FeedbackOp{click("i", "p1", kA), impression("p2", kA)}), time.Now())
	if _, _, err := s.apply(ctx, s.admin, b); err != nil { // the attempt whose reply is lost
		t.Fatal(err)
	}
	if _, err := s.provisional(b); err != nil { // what ApplyFeedback does on a timeout
		t.Fatal(err)
	}
	waitFor(t, "the log to replay", 5*time.Second, func() bool { n, _ := s.Backlog(); return n == 0 })
	if n := s.again.Load(); n != 1 {
		t.Fatalf("replay found %d batches applied already, want 1", n)
	}
	want := map[counters.Key][2]uint64{kA: {1, 1}, kB: {4, 0}}
	if got := countsOf(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counters %v, want %v", got, want)
	}
}

// A dedupe key outlives the window by store.ExpiryGrace, counted from the
// caller's clock reading: Redis starts the TTL when the script runs, a
// moment later, and an event checked just inside its window must still
// find its first copy.
func TestDedupeTTLFromCallersClock(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	s := openStore(t, srv.URL(), onlineOpts())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	defer rdb.Close()
	now := time.Now()
	op := limited("a", "p7", kA)
	op.Now, op.Expires = now.Add(-20*time.Second), now.Add(10*time.Second) // read 20 s ago, 30 s of window left then
	if _, err := s.ApplyFeedback(ctx, []store.FeedbackOp{op}, nil); err != nil {
		t.Fatal(err)
	}
	want := 30*time.Second + store.ExpiryGrace
	keys := op.Keys()
	for _, key := range []string{keys.Event, keys.Success, keys.Items} {
		ttl, err := rdb.TTL(ctx, s.endpointKey(kA.Endpoint, "d:"+key)).Result()
		if err != nil || ttl < want-2*time.Second || ttl > want {
			t.Errorf("TTL of %q = %s, %v; want about %s (window left as of the caller's clock, plus the grace)", key, ttl, err, want)
		}
	}
}

// rewardOp is a reward event of pred on item worth units reward units.
func rewardOp(item, pred string, units uint64, k counters.Key) store.FeedbackOp {
	return store.FeedbackOp{Prediction: pred, Event: "reward\x00" + item, Item: item, Reward: units, Counter: k, Expires: time.Now().Add(time.Hour)}
}

// A prediction's rewards are capped and counted once however often their
// batch is applied: again from its record (a lost reply, a replay), and
// when two replicas logged the same events during an outage.
func TestRewardsCountOnceAcrossReplaysAndReplicas(t *testing.T) {
	const u = counters.RewardUnit
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways})
	a := openStore(t, srv.URL(), fastOpts(t.TempDir()))
	b := openStore(t, srv.URL(), fastOpts(t.TempDir()))

	bt := newBatch(true, nil, toKeyOps([]store.FeedbackOp{rewardOp("i1", "p1", 3*u/4, kA), rewardOp("i2", "p1", u/2, kA)}), time.Now())
	first, replayed, err := a.apply(ctx, a.admin, bt)
	if err != nil || replayed {
		t.Fatalf("first apply: %v, replayed=%v", err, replayed)
	}
	again, replayed, err := a.apply(ctx, a.admin, bt)
	if err != nil || !replayed || fmt.Sprint(first) != fmt.Sprint(again) {
		t.Fatalf("second apply: %+v (%v, replayed=%v), first %+v", again, err, replayed, first)
	}
	if want := []store.FeedbackResult{{Reward: 3 * u / 4, RewardTotal: 3 * u / 4}, {Reward: u / 4, RewardTotal: u}}; fmt.Sprint(first) != fmt.Sprint(want) {
		t.Fatalf("answer %+v, want %+v", first, want)
	}

	srv.Stop()
	ops := []store.FeedbackOp{rewardOp("i1", "p2", u/2, kB), rewardOp("i2", "p2", u/3, kB)}
	for _, s := range []*Store{a, b, a} {
		if _, err := s.ApplyFeedback(ctx, ops, nil); err != nil {
			t.Fatalf("with Redis down: %v", err)
		}
	}
	if _, err := b.ApplyFeedback(ctx, []store.FeedbackOp{rewardOp("i3", "p2", u/2, kB)}, nil); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	waitFor(t, "both logs to replay", 5*time.Second, func() bool {
		na, _ := a.Backlog()
		nb, _ := b.Backlog()
		return na == 0 && nb == 0 && a.Healthy() && b.Healthy()
	})
	want := map[counters.Key]uint64{kA: u, kB: u}
	if got := storetest.Rewards(t, a); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reward units after replay %v, want %v", got, want)
	}
}
