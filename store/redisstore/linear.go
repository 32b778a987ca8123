package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
)

// Linear-thompson sums:
//
//	P{E}:lin                      hash  field "arm\x00layout\x00i" -> element i of the
//	                              arm's sums (HINCRBYFLOAT), "arm\x00layout\x00len" ->
//	                              their length
//	P{E}:lin:batch:<id>           string "1", TTL BatchTTL: the delta batch id applied
//	P lin:index                   set   endpoints with sums, for LoadLinear
//
// A flush sends each endpoint's deltas as one script run (linearScript)
// that adds them and records the batch id, both keys of that endpoint, so
// a batch retried after an uncertain answer is added once. A batch Redis
// did not take is kept in memory and retried, with the same id, before the
// next one (at most maxLinearQueue batches; past that the oldest are
// dropped with an error): like pending trials, at most the flush interval
// of sums are lost if the process dies during an outage.

func (s *Store) kLinear(endpoint string) string { return s.endpointKey(endpoint, "lin") }
func (s *Store) kLinearBatch(endpoint, id string) string {
	return s.endpointKey(endpoint, "lin:batch:"+id)
}
func (s *Store) kLinearIndex() string { return s.opt.Prefix + "lin:index" }

// maxLinearQueue bounds the linear batches waiting for Redis.
const maxLinearQueue = 10000

// linearQueue holds the linear batches Redis has not confirmed.
type linearQueue struct {
	mu      sync.Mutex
	batches []linearBatch
}

// linearBatch is one endpoint's deltas with the id that makes applying
// them idempotent.
type linearBatch struct {
	id       string
	endpoint string
	deltas   map[counters.LinKey][]float64
}

// linearScript adds one batch of deltas at most once.
//
//	KEYS[1]  the endpoint's sums hash
//	KEYS[2]  the batch record
//	ARGV[1]  seconds to keep the record; ARGV[2] n, then n pairs (field,
//	         length) to set, then pairs (field, delta as a decimal string)
//
// It returns 0 when it applied the batch, 1 when it had been applied.
var linearScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 1
end
local n = tonumber(ARGV[2])
local a = 3
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 1])
  a = a + 2
end
while a <= #ARGV do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[a], ARGV[a + 1])
  a = a + 2
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 0
`)

// AddLinear adds linear-thompson sum deltas, one idempotent script run
// per endpoint. When Redis does not take a batch it is kept and retried
// with the same id before the next call's batches, and AddLinear returns
// the error; the deltas are not lost, so the caller must not hand them
// back to the table.
func (s *Store) AddLinear(ctx context.Context, deltas map[counters.LinKey][]float64) error {
	byEndpoint := map[string]map[counters.LinKey][]float64{}
	for k, d := range deltas {
		if byEndpoint[k.Endpoint] == nil {
			byEndpoint[k.Endpoint] = map[counters.LinKey][]float64{}
		}
		byEndpoint[k.Endpoint][k] = d
	}
	// The queue's lock is never held across a Redis call: the batches are
	// taken out, applied, and what Redis did not take is put back in
	// front (sums commute, so order does not matter).
	q := &s.linear
	q.mu.Lock()
	for ep, d := range byEndpoint {
		var id [16]byte
		_, _ = rand.Read(id[:])
		q.batches = append(q.batches, linearBatch{id: hex.EncodeToString(id[:]), endpoint: ep, deltas: d})
	}
	batches := q.batches
	q.batches = nil
	q.mu.Unlock()
	for i, b := range batches {
		if err := s.applyLinear(ctx, b); err != nil {
			q.mu.Lock()
			q.batches = append(batches[i:len(batches):len(batches)], q.batches...)
			kept := len(q.batches)
			if n := kept - maxLinearQueue; n > 0 {
				q.batches = q.batches[n:]
				s.log.Error("redis: linear sums batches dropped while Redis was unreachable", "batches", n)
			}
			q.mu.Unlock()
			return fmt.Errorf("redis add linear sums (%d batches kept for retry): %w", kept, err)
		}
	}
	return nil
}

func (s *Store) applyLinear(ctx context.Context, b linearBatch) error {
	actx, cancel := context.WithTimeout(ctx, s.opt.OpTimeout)
	defer cancel()
	if err := s.rdb.SAdd(actx, s.kLinearIndex(), b.endpoint).Err(); err != nil {
		return err
	}
	sets := make([]any, 0, 2*len(b.deltas))
	incrs := make([]any, 0)
	for k, d := range b.deltas {
		prefix := k.Arm + "\x00" + fmt.Sprintf("%08x", k.Layout) + "\x00"
		sets = append(sets, prefix+"len", strconv.Itoa(len(d)))
		for i, v := range d {
			if v != 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
				incrs = append(incrs, prefix+strconv.Itoa(i), strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
	}
	args := append([]any{strconv.FormatInt(int64(s.opt.BatchTTL.Seconds()), 10), strconv.Itoa(len(sets) / 2)}, sets...)
	args = append(args, incrs...)
	return linearScript.Run(actx, s.rdb, []string{s.kLinear(b.endpoint), s.kLinearBatch(b.endpoint, b.id)}, args...).Err()
}

// LoadLinear returns every endpoint's linear-thompson sums, as every
// replica has added them.
func (s *Store) LoadLinear(ctx context.Context) (map[counters.LinKey][]float64, error) {
	eps, err := s.admin.SMembers(ctx, s.kLinearIndex()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis load linear sums: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(eps))
	_, err = s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ep := range eps {
			cmds[i] = p.HGetAll(ctx, s.kLinear(ep))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis load linear sums: %w", err)
	}
	out := map[counters.LinKey][]float64{}
	for i, ep := range eps {
		fields := cmds[i].Val()
		// Lengths first, then the elements.
		for f, v := range fields {
			arm, layout, idx, ok := splitLinearField(f)
			if !ok || idx != "len" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 1<<16 {
				continue
			}
			out[counters.LinKey{Endpoint: ep, Arm: arm, Layout: layout}] = make([]float64, n)
		}
		for f, v := range fields {
			arm, layout, idx, ok := splitLinearField(f)
			if !ok || idx == "len" {
				continue
			}
			sums := out[counters.LinKey{Endpoint: ep, Arm: arm, Layout: layout}]
			j, err := strconv.Atoi(idx)
			x, ferr := strconv.ParseFloat(v, 64)
			if sums == nil || err != nil || ferr != nil || j < 0 || j >= len(sums) {
				continue
			}
			sums[j] = x
		}
	}
	return out, nil
}

// splitLinearField splits "arm\x00layout\x00i".
func splitLinearField(f string) (arm string, layout uint32, idx string, ok bool) {
	parts := strings.Split(f, "\x00")
	if len(parts) != 3 || len(parts[1]) != 8 {
		return "", 0, "", false
	}
	l, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return "", 0, "", false
	}
	return parts[0], uint32(l), parts[2], true
}
