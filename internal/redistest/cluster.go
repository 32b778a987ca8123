package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/internal/testenv"
)

// ClusterOptions configure StartCluster. The zero value is three masters
// with one replica each, whose nodes take a master for failed after 1 s
// of silence (cluster-node-timeout), so a replica is promoted within a
// few seconds of its master's death.
type ClusterOptions struct {
	// Masters is how many masters share the 16384 slots; Replicas how many
	// replicas each has. Defaults 3 and 1; three masters at least, as
	// Redis requires.
	Masters, Replicas int
	// NodeTimeout is cluster-node-timeout. Default 1 s.
	NodeTimeout time.Duration
	// Server configures every node (e.g. AOF). Its Args come after the
	// cluster's own.
	Server Options
	// ReadyTimeout bounds how long StartCluster waits for every node to
	// report cluster_state:ok and every replica to be in sync. Zero means
	// 30 s.
	ReadyTimeout time.Duration
}

// Cluster is a Redis Cluster of separate redis-server processes on
// loopback ports. A test kills a master (Server.Stop) to make the cluster
// promote its replica.
type Cluster struct {
	// Nodes are every node, the initial masters first.
	Nodes []*Server
	t     testing.TB
}

// StartCluster starts the nodes with cluster-enabled yes, joins them with
// redis-cli --cluster create (which gives each master Replicas replicas
// and the slots in equal ranges), waits until every node reports
// cluster_state:ok and every replica is in sync with its master, and
// registers their shutdown with t.Cleanup. It needs redis-cli as well as
// redis-server.
func StartCluster(t testing.TB, opt ClusterOptions) *Cluster {
	t.Helper()
	testenv.LookPath(t, "Debian: apt-get install redis-tools", "redis-cli")
	if opt.Masters <= 0 {
		opt.Masters = 3
	}
	if opt.Replicas <= 0 {
		opt.Replicas = 1
	}
	if opt.NodeTimeout <= 0 {
		opt.NodeTimeout = time.Second
	}
	if opt.ReadyTimeout <= 0 {
		opt.ReadyTimeout = 30 * time.Second
	}
	c := &Cluster{t: t}
	sopt := opt.Server
	sopt.Args = append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opt.NodeTimeout.Milliseconds(), 10),
		// A replica whose master died a moment ago may always be promoted.
		"--cluster-replica-validity-factor", "0",
	}, opt.Server.Args...)
	n := opt.Masters * (1 + opt.Replicas)
	args := []string{"--cluster", "create"}
	for range n {
		s := Start(t, sopt)
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(opt.Replicas), "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(opt.ReadyTimeout)
	for {
		err := c.ready(n, opt.Masters)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not ready within %v: %v", opt.ReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports why the cluster is not serving every slot with every
// replica in sync yet, or nil.
func (c *Cluster) ready(nodes, masters int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	inSync := 0
	for _, s := range c.Nodes {
		rc := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		info, err := rc.ClusterInfo(ctx).Result()
		if err != nil {
			rc.Close()
			return fmt.Errorf("node %s: %w", s.Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(nodes)+"\r\n") {
			rc.Close()
			return fmt.Errorf("node %s: not every node known or not every slot served yet", s.Addr())
		}
		repl, err := rc.Info(ctx, "replication").Result()
		rc.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", s.Addr(), err)
		}
		if strings.Contains(repl, "role:slave") {
			if !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("replica %s not in sync with its master yet", s.Addr())
			}
			inSync++
		}
	}
	if want := nodes - masters; inSync != want {
		return fmt.Errorf("%d replicas in sync; want %d", inSync, want)
	}
	return nil
}

// URL is the redis+cluster:// URL naming every node.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr()
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Client returns a cluster client of every node, for a test to fill or
// read the cluster; it is closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr()
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// MasterOf returns the running node that serves key's slot as a master,
// as that node itself reports it, or nil when no running node does.
func (c *Cluster) MasterOf(key string) *Server {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		slot, err := rc.ClusterKeySlot(ctx, key).Result()
		var role string
		if err == nil {
			role, err = roleOf(ctx, rc)
		}
		var owns bool
		if err == nil && role == "master" {
			owns, err = servesSlot(ctx, rc, slot)
		}
		rc.Close()
		if err == nil && owns {
			return s
		}
	}
	return nil
}

func roleOf(ctx context.Context, rc *redis.Client) (string, error) {
	v, err := rc.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return "", err
	}
	role, _ := v[0].(string)
	return role, nil
}

// servesSlot reports whether the node rc is connected to holds slot as
// a master, per CLUSTER SHARDS' view of itself ("myself" in CLUSTER
// NODES).
func servesSlot(ctx context.Context, rc *redis.Client, slot int64) (bool, error) {
	nodes, err := rc.ClusterNodes(ctx).Result()
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "myself") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			a, err1 := strconv.ParseInt(lo, 10, 64)
			b, err2 := strconv.ParseInt(hi, 10, 64)
			if err1 == nil && err2 == nil && a <= slot && slot <= b {
				return true, nil
			}
		}
	}
	return false, nil
}
