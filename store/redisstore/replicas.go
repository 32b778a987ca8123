package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// errReplicaLag is the error of a write that the master applied but that
// not every replica acknowledged in time: it counts as uncertain, so the
// batch goes to the write-ahead log and is replayed (once: the batch id
// makes a replay on a master that has it change nothing).
var errReplicaLag = errors.New("the write did not reach every replica in time")

// Behind Sentinel, and in a cluster, a master's replicas are the
// durability of an acknowledged write: the master may be killed at any
// moment and one of them promoted. Replication is asynchronous, so a
// write is acknowledged only once every replica the master had online (at
// the last check) has it: the write and a WAIT run in one pipeline, on
// one connection to that master, which is what WAIT counts the replicas
// of. In a cluster that is the connection to the master of the write's
// slot (master), whose replicas are counted per master. A master without
// replicas is written as a single server is; there is nothing to fail
// over to then.

// master returns the client to send a write of key's slot on, and how
// many replicas to wait for: c itself and the replicas of the one master
// outside a cluster; in a cluster, the client of the node that serves the
// slot as master (by the slot map c last loaded) and that master's
// replicas.
func (s *Store) master(ctx context.Context, c redis.UniversalClient, key string) (redis.UniversalClient, int, error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return c, int(s.replicas.Load()), nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	if m := s.clusterReplicas.Load(); m != nil {
		n = (*m)[node.Options().Addr]
	}
	return node, n, nil
}

// pipeWait sends fill's commands, then, when wait > 0, WAIT wait, in one
// pipeline on c, and returns errReplicaLag when fewer than wait replicas
// acknowledged them within half of what ctx has left and of read, the
// client's read timeout, which also bounds WAIT's reply. The commands'
// own errors are the caller's to read.
func pipeWait(ctx context.Context, c redis.UniversalClient, wait int, read time.Duration, fill func(p redis.Pipeliner)) error {
	var w *redis.Cmd
	d := waitTimeout(ctx, read)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		fill(p)
		if wait > 0 {
			w = p.Do(ctx, "WAIT", wait, d.Milliseconds())
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return err // the connection failed; a command's error reply is the caller's
	}
	if w != nil {
		if got, err := w.Int64(); err != nil || got < int64(wait) {
			return fmt.Errorf("%w: %d of %d acknowledged it within %v", errReplicaLag, got, wait, d)
		}
	}
	return nil
}

// waitTimeout is WAIT's timeout: half of what ctx has left and of read,
// at least 1 ms (WAIT 0 would block for ever).
func waitTimeout(ctx context.Context, read time.Duration) time.Duration {
	d := read / 2
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/2)
	}
	return max(d, time.Millisecond)
}

// refreshReplicas counts the master's online replicas (INFO replication),
// which writes then wait for; an error leaves the count as it was. In a
// cluster it counts those of every master.
func (s *Store) refreshReplicas(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.AdminTimeout)
	defer cancel()
	if cc, ok := s.admin.(*redis.ClusterClient); ok {
		s.refreshClusterReplicas(ctx, cc)
		return
	}
	info, err := s.admin.Info(ctx, "replication").Result()
	if err != nil {
		return
	}
	n := onlineReplicas(info)
	if old := s.replicas.Swap(int32(n)); int(old) != n {
		s.log.Info("redis master's online replicas changed; acknowledged writes wait for every one", "addr", s.addr, "replicas", n, "before", old)
	}
}

func (s *Store) refreshClusterReplicas(ctx context.Context, cc *redis.ClusterClient) {
	var mu sync.Mutex
	m := map[string]int{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return nil // demoted since the slot map was loaded
		}
		mu.Lock()
		m[c.Options().Addr] = onlineReplicas(info)
		mu.Unlock()
		return nil
	})
	if err != nil {
		// A master that does not answer keeps the count it had; its writes
		// fail anyway until a replica takes over.
		if old := s.clusterReplicas.Load(); old != nil {
			for a, n := range *old {
				if _, ok := m[a]; !ok {
					m[a] = n
				}
			}
		}
	}
	if old := s.clusterReplicas.Swap(&m); old == nil || !maps.Equal(*old, m) {
		s.log.Info("redis cluster masters' online replicas changed; acknowledged writes wait for every replica of their master", "addr", s.addr, "replicas", fmt.Sprint(m))
	}
}

// onlineReplicas counts the lines "slaveN:ip=…,state=online,…" of INFO
// replication.
func onlineReplicas(info string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "slave") || strings.TrimLeft(k[len("slave"):], "0123456789") != "" || len(k) == len("slave") {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if f == "state=online" {
				n++
				break
			}
		}
	}
	return n
}
