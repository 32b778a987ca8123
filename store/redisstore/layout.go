package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/store"
)

// Per-endpoint keys. Everything one script or transaction touches lives
// under one endpoint's prefix, P{ENDPOINT}:, whose hash tag puts it in
// one hash slot of a Redis Cluster; different endpoints spread over the
// masters. The prefix is P + "{" + the endpoint + "}:" (an empty endpoint
// is written as NUL, which no endpoint name holds), so it differs for
// every endpoint, and every key of one endpoint hashes alike wherever
// the first "}" falls.

// endpointKey is the key of one endpoint's state named by suffix.
func (s *Store) endpointKey(endpoint, suffix string) string {
	if endpoint == "" {
		endpoint = "\x00"
	}
	return s.opt.Prefix + "{" + endpoint + "}:" + suffix
}

func (s *Store) trialsKey(endpoint string) string { return s.endpointKey(endpoint, "counters:trials") }
func (s *Store) successesKey(endpoint string) string {
	return s.endpointKey(endpoint, "counters:successes")
}
func (s *Store) rewardKey(endpoint string) string { return s.endpointKey(endpoint, "counters:reward") }

// maxKnown bounds the endpoints a Store remembers as indexed; past it the
// memory is cleared and they are added to the index again, which is
// harmless (SADD of a member present).
const maxKnown = 10_000

// knownEndpoints remembers which endpoints this Store put in the endpoint
// index, so a write adds an endpoint once, not every time.
type knownEndpoints struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// missing returns those of eps not known to be indexed.
func (k *knownEndpoints) missing(eps []string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, e := range eps {
		if _, ok := k.m[e]; !ok {
			out = append(out, e)
		}
	}
	return out
}

func (k *knownEndpoints) add(eps []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil || len(k.m)+len(eps) > maxKnown {
		k.m = make(map[string]struct{}, len(eps))
	}
	for _, e := range eps {
		k.m[e] = struct{}{}
	}
}

// indexEndpoints adds the endpoints to the endpoint index (P endpoints)
// unless this Store did before, durably as a batch is written (waiting
// for the index's replicas), before their counters are written: an
// endpoint whose counters exist is always listed.
func (s *Store) indexEndpoints(ctx context.Context, c redis.UniversalClient, read time.Duration, eps []string) error {
	eps = s.known.missing(eps)
	if len(eps) == 0 {
		return nil
	}
	members := make([]any, len(eps))
	for i, e := range eps {
		members[i] = e
	}
	node, wait, err := s.master(ctx, c, s.kEndpoints)
	if err != nil {
		return err
	}
	var add *redis.IntCmd
	if err := pipeWait(ctx, node, wait, read, func(p redis.Pipeliner) {
		add = p.SAdd(ctx, s.kEndpoints, members...)
	}); err != nil {
		return err
	}
	if err := add.Err(); err != nil {
		return err
	}
	s.known.add(eps)
	return nil
}

// endpoints lists the endpoint index.
func (s *Store) endpoints(ctx context.Context) ([]string, error) {
	eps, err := s.admin.SMembers(ctx, s.kEndpoints).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(eps)
	return eps, nil
}

// Migration from the first layout, in which the counters, dedupe keys,
// batch records and history series of every endpoint shared global keys
// (P counters:trials, P counters:successes, P d:KEY, P batch:ID,
// P hist:ENDPOINT\x00SEGMENT, P hist:index). Only a single server or a
// Sentinel master can hold it (the first layout refused Redis Cluster).
//
// At start (and after every outage) the store moves the counters and the
// history into the per-endpoint keys, one endpoint's chunk of fields or
// one series per script run, each atomic: a field is moved exactly once
// (read, added to the new hash, deleted from the old one) however many
// replicas migrate at the same time, and an interrupted migration is
// finished by the next one. Dedupe keys cannot be moved (their names do
// not say their endpoint); instead, until P legacy_until (Unix seconds:
// the last migration that moved anything, plus the longest attribution
// window and ExpiryGrace), the feedback script copies an old dedupe key
// to its new name the first time it needs it, and a replayed batch whose
// old record exists counts as applied.

func (s *Store) legacyKey(suffix string) string { return s.opt.Prefix + suffix }

// moveCountersScript moves counter fields of one endpoint from the old
// hashes to the new ones and lists the endpoint.
//
//	KEYS[1], KEYS[2]  old trials, old successes
//	KEYS[3], KEYS[4]  the endpoint's trials, successes
//	KEYS[5]           the endpoint index
//	ARGV[1]           the endpoint; ARGV[2..] the fields
//
// It returns how many fields it moved.
var moveCountersScript = redis.NewScript(`
local n = 0
for i = 2, #ARGV do
  for j = 1, 2 do
    local v = redis.call('HGET', KEYS[j], ARGV[i])
    if v then
      redis.call('HINCRBY', KEYS[j + 2], ARGV[i], v)
      redis.call('HDEL', KEYS[j], ARGV[i])
      n = n + 1
    end
  end
end
redis.call('SADD', KEYS[5], ARGV[1])
return n
`)

// moveHistoryScript moves one history series to its endpoint's keys.
//
//	KEYS[1]  the old series          KEYS[2]  the new series
//	KEYS[3]  the endpoint's series index
//	KEYS[4]  the old series index    KEYS[5]  the endpoints with history
//	ARGV[1]  the endpoint
//
// It returns how many points it moved.
var moveHistoryScript = redis.NewScript(`
local kv = redis.call('HGETALL', KEYS[1])
for i = 1, #kv, 2 do
  redis.call('HSETNX', KEYS[2], kv[i], kv[i + 1])
end
if #kv > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
  redis.call('SADD', KEYS[5], ARGV[1])
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], KEYS[1])
return #kv / 2
`)

// migrate moves what the first layout holds into the per-endpoint keys
// and reads P legacy_until. It does nothing in a cluster.
func (s *Store) migrate(ctx context.Context) error {
	if s.cluster {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*s.opt.AdminTimeout)
	defer cancel()
	moved, err := s.migrateCounters(ctx)
	if err != nil {
		return fmt.Errorf("migrate counters: %w", err)
	}
	n, err := s.migrateHistory(ctx)
	if err != nil {
		return fmt.Errorf("migrate history: %w", err)
	}
	moved += n
	until := s.legacyKey("legacy_until")
	if moved > 0 {
		t := s.now().Add(store.MaxAttributionWindow + store.ExpiryGrace).Unix()
		if err := s.admin.Set(ctx, until, t, 0).Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		s.log.Info("moved the counters and history of the first key layout to per-endpoint keys", "addr", s.addr, "fields_and_points", moved)
	}
	v, err := s.admin.Get(ctx, until).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("migrate: %w", err)
	}
	s.legacyUntil.Store(v)
	return nil
}

func (s *Store) migrateCounters(ctx context.Context) (int, error) {
	oldT, oldS := s.legacyKey("counters:trials"), s.legacyKey("counters:successes")
	var tf, sf *redis.StringSliceCmd
	if _, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		tf = p.HKeys(ctx, oldT)
		sf = p.HKeys(ctx, oldS)
		return nil
	}); err != nil {
		return 0, err
	}
	byEndpoint := map[string][]string{}
	for _, f := range slices.Concat(tf.Val(), sf.Val()) {
		k, ok := counters.DecodeKey(f)
		if !ok {
			continue // left in the old hash, which no reader looks at
		}
		if fs := byEndpoint[k.Endpoint]; !slices.Contains(fs, f) {
			byEndpoint[k.Endpoint] = append(fs, f)
		}
	}
	moved := 0
	for e, fields := range byEndpoint {
		for part := range slices.Chunk(fields, chunk) {
			args := make([]any, 0, 1+len(part))
			args = append(args, e)
			for _, f := range part {
				args = append(args, f)
			}
			n, err := moveCountersScript.Run(ctx, s.admin, []string{oldT, oldS, s.trialsKey(e), s.successesKey(e), s.kEndpoints}, args...).Int()
			if err != nil {
				return moved, err
			}
			moved += n
		}
	}
	return moved, nil
}

func (s *Store) migrateHistory(ctx context.Context) (int, error) {
	oldIndex := s.legacyKey("hist:index")
	series, err := s.admin.SMembers(ctx, oldIndex).Result()
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, old := range series {
		rest, ok := strings.CutPrefix(old, s.legacyKey("hist:"))
		e, seg, ok2 := strings.Cut(rest, "\x00")
		if !ok || !ok2 {
			continue
		}
		n, err := moveHistoryScript.Run(ctx, s.admin, []string{old, s.histKey(e, seg), s.histIndexKey(e), oldIndex, s.kHistEndpoints}, e).Int()
		if err != nil {
			return moved, err
		}
		moved += n
	}
	return moved, nil
}

// legacy reports whether first-layout dedupe keys and batch records may
// still be about (see the migration above).
func (s *Store) legacy() bool {
	u := s.legacyUntil.Load()
	return u > 0 && s.now().Unix() < u
}

// legacyApplied returns the results of a batch that the first layout
// recorded as applied, when it did.
func (s *Store) legacyApplied(ctx context.Context, c redis.UniversalClient, b *batch) ([]store.FeedbackResult, bool, error) {
	v, err := c.Get(ctx, s.legacyKey("batch:"+b.idHex())).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	res, _, err := parseReply([]any{int64(1), v}, len(b.ops))
	return res, err == nil, err
}

// ttlString is the decimal of whole seconds in d, for script arguments.
func ttlString(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
