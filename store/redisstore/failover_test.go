package redisstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
)

// TestSentinelFailoverLosesNoAcknowledgedWrite runs two replicas of the
// store on one Sentinel-managed master while they write trials and clicks
// without pause, kills the master with SIGKILL mid-stream and lets the
// sentinels promote its replica. No write fails meanwhile (it goes to the
// write-ahead log), and once the logs have replayed every acknowledged
// trial and click is counted exactly once, and both stores are healthy.
func TestSentinelFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes seconds")
	}
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{Server: redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways}})
	// Deadlines generous enough for a loaded 2-core machine running five
	// redis-servers; what goes over them goes to the log, which is also
	// correct, only slower.
	opt := func() Options {
		return Options{WALDir: t.TempDir(), CheckInterval: 50 * time.Millisecond, OpTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, DialTimeout: 500 * time.Millisecond}
	}
	stores := []*Store{openStore(t, sn.URL(), opt()), openStore(t, sn.URL(), opt())}
	for _, s := range stores {
		waitFor(t, "the store to see the master's replica", 10*time.Second, func() bool { return s.replicas.Load() == 1 })
	}

	load := startWriters(stores, map[counters.Key]uint64{kA: 1}, func(n int64) []store.FeedbackOp {
		return []store.FeedbackOp{click("i", fmt.Sprintf("p%d", n), kB)}
	})
	defer load.halt()
	trials, clicks := &load.trials, &load.clicks

	waitFor(t, "writes before the failover", 10*time.Second, func() bool { return clicks.Load() >= 200 })
	old := sn.Master.Addr()
	sn.Master.Stop() // SIGKILL
	killedAt := clicks.Load()
	waitFor(t, "the sentinels to promote the replica", 20*time.Second, func() bool { return sn.MasterAddr() == sn.Replica.Addr() })
	waitFor(t, "both stores writing to the new master", 15*time.Second, func() bool {
		return stores[0].Healthy() && stores[1].Healthy()
	})
	after := clicks.Load()
	waitFor(t, "writes after the failover", 10*time.Second, func() bool { return clicks.Load() >= after+200 })
	for _, err := range load.halt() {
		t.Error(err)
	}
	t.Logf("master %s killed after %d clicks; %s promoted; %d clicks and %d trials acknowledged in all", old, killedAt, sn.Replica.Addr(), clicks.Load(), trials.Load())

	for i, s := range stores {
		waitFor(t, fmt.Sprintf("store %d's log replayed", i), 15*time.Second, func() bool {
			n, _ := s.Backlog()
			return n == 0 && s.Healthy()
		})
	}
	got := countsOf(t, stores[1])
	want := map[counters.Key][2]uint64{kA: {uint64(trials.Load()), 0}, kB: {0, uint64(clicks.Load())}}
	if got[kA] != want[kA] || got[kB] != want[kB] {
		t.Fatalf("counters after the failover %v; want %v (trials, successes)", got, want)
	}
}

// writers keeps two workers per store writing without pause, each round
// an AddTrials of trials and an ApplyFeedback of ops(n), n fresh for every
// round, counting the rounds acknowledged, until halt.
type writers struct {
	trials, clicks atomic.Int64 // acknowledged
	seq            atomic.Int64
	stop           chan struct{}
	wg             sync.WaitGroup
	mu             sync.Mutex
	errs           []error
	stopped        bool
}

func startWriters(stores []*Store, trials map[counters.Key]uint64, ops func(n int64) []store.FeedbackOp) *writers {
	w := &writers{stop: make(chan struct{})}
	for i, s := range stores {
		for j := range 2 {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.run(s, fmt.Sprintf("store %d worker %d", i, j), trials, ops)
			}()
		}
	}
	return w
}

func (w *writers) run(s *Store, who string, trials map[counters.Key]uint64, ops func(n int64) []store.FeedbackOp) {
	fail := func(err error) {
		w.mu.Lock()
		w.errs = append(w.errs, fmt.Errorf("%s: %w", who, err))
		w.mu.Unlock()
	}
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.AddTrials(ctx, trials); err != nil {
			fail(fmt.Errorf("add trials: %w", err))
		} else {
			w.trials.Add(1)
		}
		n := w.seq.Add(1)
		res, err := s.ApplyFeedback(ctx, ops(n), nil)
		cancel()
		switch {
		case err != nil:
			fail(fmt.Errorf("feedback: %w", err))
		case slices.ContainsFunc(res, func(r store.FeedbackResult) bool { return r.Duplicate }):
			fail(fmt.Errorf("round %d answered as a duplicate: %+v", n, res))
		default:
			w.clicks.Add(1)
		}
	}
}

// halt stops the workers (once) and returns the failures they saw.
func (w *writers) halt() []error {
	if !w.stopped {
		w.stopped = true
		close(w.stop)
		w.wg.Wait()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errs
}

// TestWriteWaitsForTheReplica stalls the replica: a write the master
// applied but the replica did not acknowledge in time is not reported as
// counted; it goes to the log, and its replay counts it once.
func TestWriteWaitsForTheReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("a sentinel setup takes seconds")
	}
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
	s := openStore(t, sn.URL(), fastOpts(t.TempDir())) // writes wait up to 1 s for the replica

	waitFor(t, "the store to see the master's replica", 10*time.Second, func() bool { return s.replicas.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", "p1", kA)}, nil)
	if err != nil || !res[0].Success {
		t.Fatalf("with the replica in step: %+v, %v; want a counted success", res, err)
	}

	replica := sn.Replica.Client()
	sleeping := make(chan error, 1)
	go func() { sleeping <- replica.Do(ctx, "DEBUG", "SLEEP", "4").Err() }()
	defer func() {
		if err := <-sleeping; err != nil {
			t.Errorf("DEBUG SLEEP on the replica: %v", err)
		}
	}()
	master := sn.Master.Client()
	waitFor(t, "the replica to stall", 5*time.Second, func() bool {
		// WAIT counts the replicas that have this connection's last write.
		var w *redis.Cmd
		_, err := master.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "stall-probe", "1", 0)
			w = p.Do(ctx, "WAIT", 1, 10)
			return nil
		})
		n, _ := w.Int64()
		return err == nil && n == 0
	})
	res, err = s.ApplyFeedback(ctx, []store.FeedbackOp{click("i", "p2", kA)}, nil)
	if err != nil || res[0].Success || res[0].Duplicate {
		t.Fatalf("with the replica stalled: %+v, %v; want a provisional result (logged, not yet counted)", res, err)
	}
	if n, _ := s.Backlog(); n != 1 {
		t.Fatalf("backlog %d batches; want the unacknowledged write logged", n)
	}
	waitFor(t, "the log replayed once the replica acknowledges", 15*time.Second, func() bool {
		n, _ := s.Backlog()
		return n == 0 && s.Healthy()
	})
	if got := countsOf(t, s)[kA]; got != [2]uint64{0, 2} {
		t.Fatalf("counters %v; want the two clicks counted once each", got)
	}
}

func TestOnlineReplicas(t *testing.T) {
	for _, tc := range []struct {
		info string
		want int
	}{
		{"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n", 0},
		{"# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=42,lag=0\r\nslave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:42\r\n", 1},
		{"slave0:ip=a,port=1,state=online,offset=1,lag=0\nslave1:ip=b,port=1,state=online,offset=1,lag=1\n", 2},
		{"role:slave\r\nmaster_host:10.0.0.1\r\nslave_read_repl_offset:42\r\nslave_repl_offset:42\r\nslave_priority:100\r\n", 0},
	} {
		if got := onlineReplicas(tc.info); got != tc.want {
			t.Errorf("onlineReplicas(%q) = %d; want %d", tc.info, got, tc.want)
		}
	}
}
