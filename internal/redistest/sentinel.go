package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions configure StartSentinel. The zero value is a master
// named "mymaster", one replica and three sentinels with a quorum of two,
// which mark the master down after 500 ms and fail over within 2 s.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor the master under.
	// Default "mymaster".
	MasterName string
	// Sentinels is how many sentinels run; Quorum how many must agree that
	// the master is down. Defaults 3 and 2.
	Sentinels, Quorum int
	// DownAfter is the sentinels' down-after-milliseconds: how long the
	// master may not answer before it is taken for down. Default 500 ms.
	DownAfter time.Duration
	// FailoverTimeout is the sentinels' failover-timeout. Default 2 s.
	FailoverTimeout time.Duration
	// Server configures the master and the replica (e.g. AOF).
	Server Options
	// ReadyTimeout bounds how long StartSentinel waits for the replica to
	// be in sync and every sentinel to know the replica and the other
	// sentinels. Zero means 20 s.
	ReadyTimeout time.Duration
}

// Sentinel is a master, its replica and the sentinels that monitor it, as
// separate redis-server processes on loopback ports. A test kills the
// master (Master.Stop) to make the sentinels promote the replica.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server

	t    testing.TB
	name string
}

// StartSentinel starts the master, the replica (replicaof the master) and
// the sentinels, waits until the replica is in sync and every sentinel
// knows the replica and all the other sentinels (so that a failover can be
// agreed on), and registers their shutdown with t.Cleanup.
func StartSentinel(t testing.TB, opt SentinelOptions) *Sentinel {
	t.Helper()
	if opt.MasterName == "" {
		opt.MasterName = "mymaster"
	}
	if opt.Sentinels <= 0 {
		opt.Sentinels = 3
	}
	if opt.Quorum <= 0 {
		opt.Quorum = 2
	}
	if opt.DownAfter <= 0 {
		opt.DownAfter = 500 * time.Millisecond
	}
	if opt.FailoverTimeout <= 0 {
		opt.FailoverTimeout = 2 * time.Second
	}
	if opt.ReadyTimeout <= 0 {
		opt.ReadyTimeout = 20 * time.Second
	}
	s := &Sentinel{t: t, name: opt.MasterName}
	s.Master = Start(t, opt.Server)
	ropt := opt.Server
	ropt.Args = append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.port)}, opt.Server.Args...)
	s.Replica = Start(t, ropt)
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s %[5]d\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		opt.MasterName, s.Master.port, opt.Quorum, opt.DownAfter.Milliseconds(), opt.FailoverTimeout.Milliseconds())
	for range opt.Sentinels {
		s.Sentinels = append(s.Sentinels, start(t, Options{StartTimeout: opt.Server.StartTimeout}, conf))
	}
	deadline := time.Now().Add(opt.ReadyTimeout)
	for {
		err := s.ready(len(s.Sentinels))
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel setup not ready within %v: %v", opt.ReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports why the setup cannot fail over yet, or nil.
func (s *Sentinel) ready(sentinels int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: s.Replica.Addr(), MaxRetries: -1})
	defer rc.Close()
	info, err := rc.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	if !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("replica not in sync with the master yet")
	}
	for _, sn := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1})
		m, err := sc.Master(ctx, s.name).Result()
		sc.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", sn.Addr(), err)
		}
		if m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
			return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels", sn.Addr(), m["num-slaves"], m["num-other-sentinels"])
		}
	}
	return nil
}

// URL is the redis+sentinel:// URL of the master, database 0.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr()
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + s.name + "/0"
}

// MasterAddr is the master's HOST:PORT as the first sentinel that answers
// tells it, or "" when none answers.
func (s *Sentinel) MasterAddr() string {
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1})
		hp, err := sc.GetMasterAddrByName(ctx, s.name).Result()
		sc.Close()
		cancel()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1])
		}
	}
	return ""
}
