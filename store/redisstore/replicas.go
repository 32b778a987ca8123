package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// errReplicaLag is the error of a write that the master applied but that
// not every replica acknowledged in time: it counts as uncertain, so the
// batch goes to the write-ahead log and is replayed (once: the batch id
// makes a replay on a master that has it change nothing).
var errReplicaLag = errors.New("the write did not reach every replica in time")

// Behind Sentinel, the master's replicas are the durability of an
// acknowledged write: the master may be killed at any moment and one of
// them promoted. Replication is asynchronous, so a write is acknowledged
// only once every replica the master had online (at the last check) has
// it: the script and a WAIT run in one pipeline, on one connection, which
// is what WAIT counts the replicas of. A master without replicas is
// written as a single server is; there is nothing to fail over to then.

// applyAndWait runs the script and WAIT n in one pipeline and returns the
// script's reply, or errReplicaLag when fewer than n replicas acknowledged
// the write in time: within half of what ctx has left and of read, the
// client's read timeout, which also bounds WAIT's reply.
func applyAndWait(ctx context.Context, c redis.UniversalClient, n int, read time.Duration, keys []string, args []any) (any, error) {
	wait := waitTimeout(ctx, read)
	for attempt := 0; ; attempt++ {
		var ev, w *redis.Cmd
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			ev = applyScript.EvalSha(ctx, p, keys, args...)
			w = p.Do(ctx, "WAIT", n, wait.Milliseconds())
			return nil
		})
		if attempt == 0 && redis.HasErrorPrefix(ev.Err(), "NOSCRIPT") {
			// A promoted replica has not cached the script: load it and
			// run the pipeline again.
			if err := applyScript.Load(ctx, c).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err := ev.Err(); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		if got, _ := w.Int64(); got < int64(n) {
			return nil, fmt.Errorf("%w: %d of %d acknowledged it within %v", errReplicaLag, got, n, wait)
		}
		return ev.Val(), nil
	}
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
// which writes then wait for; an error leaves the count as it was.
func (s *Store) refreshReplicas(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.AdminTimeout)
	defer cancel()
	info, err := s.admin.Info(ctx, "replication").Result()
	if err != nil {
		return
	}
	n := onlineReplicas(info)
	if old := s.replicas.Swap(int32(n)); int(old) != n {
		s.log.Info("redis master's online replicas changed; acknowledged writes wait for every one", "addr", s.addr, "replicas", n, "before", old)
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
