package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/store"
)

// chunk bounds the keys, fields or commands sent in one command or
// pipeline by the methods of this file.
const chunk = 500

// Discounted counts.

// PutDiscounted stores discounted-count snapshots, replacing earlier ones
// (the last writer wins: every replica derives the same values from the
// shared counters).
func (s *Store) PutDiscounted(ctx context.Context, entries []counters.DiscEntry) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for part := range slices.Chunk(entries, chunk) {
			args := make([]any, 0, 2*len(part))
			for _, e := range part {
				v, err := e.Disc.MarshalBinary()
				if err != nil {
					return err
				}
				args = append(args, e.Key.Encode(), v)
			}
			p.HSet(ctx, s.kDisc, args...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis put discounted: %w", err)
	}
	return nil
}

// LoadDiscounted returns the stored discounted-count snapshots; malformed
// ones are skipped.
func (s *Store) LoadDiscounted(ctx context.Context) ([]counters.DiscEntry, error) {
	m, err := s.admin.HGetAll(ctx, s.kDisc).Result()
	if err != nil {
		return nil, fmt.Errorf("redis load discounted: %w", err)
	}
	var out []counters.DiscEntry
	for f, v := range m {
		k, ok := counters.DecodeKey(f)
		if !ok {
			continue
		}
		var d counters.Disc
		if d.UnmarshalBinary([]byte(v)) != nil {
			continue
		}
		out = append(out, counters.DiscEntry{Key: k, Disc: d})
	}
	slices.SortFunc(out, func(a, b counters.DiscEntry) int {
		return strings.Compare(a.Key.Encode(), b.Key.Encode())
	})
	return out, nil
}

// History.

func (s *Store) histKey(endpoint, segment string) string {
	return s.endpointKey(endpoint, "hist:"+segment)
}

// histIndexKey is the set of an endpoint's history series keys.
func (s *Store) histIndexKey(endpoint string) string { return s.endpointKey(endpoint, "hist:index") }

// AddHistory stores a history point unless one exists for the same series
// and time, so replicas sharing Redis write one series: the first writer
// wins. It reports whether it stored the point.
func (s *Store) AddHistory(ctx context.Context, r store.Record) (bool, error) {
	n, err := s.AddHistoryBatch(ctx, []store.Record{r})
	return n == 1, err
}

// AddHistoryBatch stores history points, each unless one exists for the
// same series and time (the first writer wins), in one MULTI/EXEC
// transaction per endpoint (whose keys share a hash slot); it returns how
// many it stored.
func (s *Store) AddHistoryBatch(ctx context.Context, recs []store.Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	byEndpoint := map[string][]store.Record{}
	var eps []string
	for _, r := range recs {
		if _, ok := byEndpoint[r.Endpoint]; !ok {
			eps = append(eps, r.Endpoint)
		}
		byEndpoint[r.Endpoint] = append(byEndpoint[r.Endpoint], r)
	}
	members := make([]any, len(eps))
	for i, e := range eps {
		members[i] = e
	}
	// Every time, not once per endpoint: pruning drops an endpoint whose
	// series are all gone, and an add racing that is listed again by the
	// endpoint's next add.
	if err := s.admin.SAdd(ctx, s.kHistEndpoints, members...).Err(); err != nil {
		return 0, fmt.Errorf("redis add %d history points: %w", len(recs), err)
	}
	n := 0
	for _, e := range eps {
		rs := byEndpoint[e]
		added := make([]*redis.BoolCmd, len(rs))
		_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
			keys := make([]any, 0, len(rs))
			for i, r := range rs {
				key := s.histKey(r.Endpoint, r.Segment)
				added[i] = p.HSetNX(ctx, key, strconv.FormatInt(r.Time, 10), r.Value)
				keys = append(keys, key)
			}
			p.SAdd(ctx, s.histIndexKey(e), keys...)
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("redis add %d history points: %w", len(recs), err)
		}
		for _, c := range added {
			if c.Val() {
				n++
			}
		}
	}
	return n, nil
}

// History returns the points of one series with from ≤ time < to (a zero
// bound is open; so is a negative from), oldest first.
func (s *Store) History(ctx context.Context, endpoint, segment string, from, to int64) ([]store.Record, error) {
	key := s.histKey(endpoint, segment)
	fields, err := s.admin.HKeys(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redis history %s/%s: %w", endpoint, segment, err)
	}
	type point struct {
		t     int64
		field string
	}
	pts := make([]point, 0, len(fields))
	for _, f := range fields {
		t, err := strconv.ParseInt(f, 10, 64)
		if err != nil || (from > 0 && t < from) || (to != 0 && t >= to) {
			continue
		}
		pts = append(pts, point{t, f})
	}
	if len(pts) == 0 {
		return nil, nil
	}
	slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.t, b.t) })
	out := make([]store.Record, 0, len(pts))
	for part := range slices.Chunk(pts, chunk) {
		names := make([]string, len(part))
		for i, p := range part {
			names[i] = p.field
		}
		vals, err := s.admin.HMGet(ctx, key, names...).Result()
		if err != nil {
			return nil, fmt.Errorf("redis history %s/%s: %w", endpoint, segment, err)
		}
		for i, v := range vals {
			if v, ok := v.(string); ok { // nil: pruned meanwhile
				out = append(out, store.Record{Endpoint: endpoint, Segment: segment, Time: part[i].t, Value: []byte(v)})
			}
		}
	}
	return out, nil
}

// dropIfEmpty removes a history series from the index once its hash is
// gone, atomically, so a point added concurrently keeps its series listed.
var dropIfEmpty = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.call('SREM', KEYS[2], KEYS[1])
end
return 0
`)

// PruneSeries deletes history points and off-policy minutes older than
// cutoff, and thins history points older than thinBefore to one per
// keepEvery (those whose time is a multiple of it). It returns how many
// points it deleted, an off-policy minute (all replicas' snapshots of it)
// counting as one. Replicas may prune concurrently.
func (s *Store) PruneSeries(ctx context.Context, cutoff, thinBefore, keepEvery int64) (int, error) {
	n, err := s.pruneHistory(ctx, cutoff, thinBefore, keepEvery)
	if err != nil {
		return n, fmt.Errorf("redis prune history: %w", err)
	}
	m, err := s.pruneOffPolicy(ctx, cutoff)
	if err != nil {
		return n + m, fmt.Errorf("redis prune off-policy: %w", err)
	}
	return n + m, nil
}

func (s *Store) pruneHistory(ctx context.Context, cutoff, thinBefore, keepEvery int64) (int, error) {
	eps, err := s.admin.SMembers(ctx, s.kHistEndpoints).Result()
	if err != nil {
		return 0, err
	}
	slices.Sort(eps)
	n := 0
	for _, e := range eps {
		m, err := s.pruneEndpointHistory(ctx, e, cutoff, thinBefore, keepEvery)
		n += m
		if err != nil {
			return n, err
		}
		// An endpoint whose series are all gone leaves the list.
		if left, err := s.admin.Exists(ctx, s.histIndexKey(e)).Result(); err != nil {
			return n, err
		} else if left == 0 {
			if err := s.admin.SRem(ctx, s.kHistEndpoints, e).Err(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// pruneEndpointHistory is pruneHistory for one endpoint's series.
func (s *Store) pruneEndpointHistory(ctx context.Context, endpoint string, cutoff, thinBefore, keepEvery int64) (int, error) {
	index := s.histIndexKey(endpoint)
	series, err := s.admin.SMembers(ctx, index).Result()
	if err != nil {
		return 0, err
	}
	slices.Sort(series)
	n := 0
	for part := range slices.Chunk(series, chunk/10) {
		keys := make([]*redis.StringSliceCmd, len(part))
		_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range part {
				keys[i] = p.HKeys(ctx, k)
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		var dels []*redis.IntCmd
		_, err = s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range part {
				var drop []string
				for _, f := range keys[i].Val() {
					t, err := strconv.ParseInt(f, 10, 64)
					if err != nil || t < cutoff || (t < thinBefore && keepEvery > 0 && t%keepEvery != 0) {
						drop = append(drop, f)
					}
				}
				for d := range slices.Chunk(drop, chunk) {
					dels = append(dels, p.HDel(ctx, k, d...))
				}
				dropIfEmpty.Eval(ctx, p, []string{k, index})
			}
			return nil
		})
		for _, d := range dels {
			n += int(d.Val())
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Off-policy minutes.

func (s *Store) opKey(endpoint, segment string, minute int64) string {
	return s.kOp + endpoint + "\x00" + segment + "\x00" + strconv.FormatInt(minute, 10)
}

// parseOpKey splits an off-policy key. Endpoint names hold no NUL and the
// minute is decimal, so a NUL in the segment is no ambiguity.
func (s *Store) parseOpKey(k string) (endpoint, segment string, minute int64, ok bool) {
	rest, ok := strings.CutPrefix(k, s.kOp)
	if !ok {
		return "", "", 0, false
	}
	i, j := strings.IndexByte(rest, 0), strings.LastIndexByte(rest, 0)
	if i < 0 || j == i {
		return "", "", 0, false
	}
	minute, err := strconv.ParseInt(rest[j+1:], 10, 64)
	if err != nil {
		return "", "", 0, false
	}
	return rest[:i], rest[i+1 : j], minute, true
}

// ReplicaID is the id under which this replica stores its off-policy
// snapshots (Options.ReplicaID or the random one chosen at Open).
func (s *Store) ReplicaID() string { return s.opt.ReplicaID }

// PutOffPolicy stores this replica's off-policy bucket snapshots, each
// replacing this replica's earlier snapshot of the same bucket and leaving
// other replicas' alone. A snapshot is cumulative for its replica: the sum
// of a bucket over every replica is the bucket's total. The buckets are
// first indexed (and marked touched now, for OffPolicyOthers), then
// written: the keys are of many hash slots, so no transaction holds them
// all, and in this order no snapshot is ever left out of the index (an
// index entry whose write failed names a key that is not there, which
// readers skip and pruning removes).
func (s *Store) PutOffPolicy(ctx context.Context, buckets map[offpolicy.Key]offpolicy.Minute) error {
	if len(buckets) == 0 {
		return nil
	}
	now := float64(s.now().UnixMilli())
	touched := make([]redis.Z, 0, len(buckets))
	minutes := make([]redis.Z, 0, len(buckets))
	snaps := make(map[string][]byte, len(buckets))
	for bk, m := range buckets {
		v, err := m.MarshalBinary()
		if err != nil {
			return fmt.Errorf("redis put off-policy: %w", err)
		}
		k := s.opKey(bk.Endpoint, bk.Segment, bk.Minute)
		snaps[k] = v
		touched = append(touched, redis.Z{Score: now, Member: k})
		minutes = append(minutes, redis.Z{Score: float64(bk.Minute), Member: k})
	}
	_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		for part := range slices.Chunk(touched, chunk) {
			p.ZAdd(ctx, s.kOpTouched, part...)
		}
		for part := range slices.Chunk(minutes, chunk) {
			p.ZAdd(ctx, s.kOpMinutes, part...)
		}
		return nil
	})
	if err == nil {
		_, err = s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k, v := range snaps {
				p.HSet(ctx, k, s.opt.ReplicaID, v)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("redis put off-policy: %w", err)
	}
	return nil
}

// LoadOffPolicy returns this replica's own off-policy bucket snapshots
// (those stored under its ReplicaID), so a replica restarted with the same
// id resumes its cumulative sums; malformed ones are skipped. Other
// replicas' snapshots are OffPolicyOthers's.
func (s *Store) LoadOffPolicy(ctx context.Context) (map[offpolicy.Key]offpolicy.Minute, error) {
	keys, err := s.allOpKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis load off-policy: %w", err)
	}
	out := map[offpolicy.Key]offpolicy.Minute{}
	for part := range slices.Chunk(keys, chunk) {
		vals := make([]*redis.StringCmd, len(part))
		_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range part {
				vals[i] = p.HGet(ctx, k, s.opt.ReplicaID)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("redis load off-policy: %w", err)
		}
		for i, v := range vals {
			b, err := v.Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("redis load off-policy: %w", err)
			}
			var m offpolicy.Minute
			if e, seg, minute, ok := s.parseOpKey(part[i]); ok && m.UnmarshalBinary(b) == nil {
				out[offpolicy.Key{Endpoint: e, Segment: seg, Minute: minute}] = m
			}
		}
	}
	return out, nil
}

// allOpKeys lists every off-policy key, scanning the minute index so a
// concurrent write or prune does not hide a key present throughout.
func (s *Store) allOpKeys(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var keys []string
	var cursor uint64
	for {
		page, next, err := s.admin.ZScan(ctx, s.kOpMinutes, cursor, "", chunk).Result()
		if err != nil {
			return nil, err
		}
		for i := 0; i < len(page); i += 2 { // member, score
			if k := page[i]; !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// OffPolicyOthers returns, for every off-policy bucket some replica wrote
// at or after since (by the writer's clock, so allow for skew between
// replicas), the sum of the other replicas' snapshots of it, field by
// field. Buckets only this replica wrote are left out; malformed snapshots
// are skipped. A zero since means every bucket.
func (s *Store) OffPolicyOthers(ctx context.Context, since time.Time) (map[offpolicy.Key]offpolicy.Minute, error) {
	lo := "-inf"
	if !since.IsZero() {
		lo = strconv.FormatInt(since.UnixMilli(), 10)
	}
	keys, err := s.admin.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.kOpTouched, Start: lo, Stop: "+inf", ByScore: true}).Result()
	if err != nil {
		return nil, fmt.Errorf("redis off-policy of other replicas: %w", err)
	}
	out := map[offpolicy.Key]offpolicy.Minute{}
	for part := range slices.Chunk(keys, chunk) {
		snaps := make([]*redis.MapStringStringCmd, len(part))
		_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range part {
				snaps[i] = p.HGetAll(ctx, k)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("redis off-policy of other replicas: %w", err)
		}
		for i, c := range snaps {
			e, seg, m, ok := s.parseOpKey(part[i])
			if !ok {
				continue
			}
			if sum, ok := s.sumOthers(c.Val()); ok {
				out[offpolicy.Key{Endpoint: e, Segment: seg, Minute: m}] = sum
			}
		}
	}
	return out, nil
}

// sumOthers adds up the snapshots of replicas other than this one, in
// replica id order so the float sums do not depend on map order. It
// reports false when there is none.
func (s *Store) sumOthers(snaps map[string]string) (offpolicy.Minute, bool) {
	ids := make([]string, 0, len(snaps))
	for id := range snaps {
		if id != s.opt.ReplicaID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	sum := offpolicy.Minute{Arms: map[string]*offpolicy.Sums{}}
	found := false
	for _, id := range ids {
		var m offpolicy.Minute
		if m.UnmarshalBinary([]byte(snaps[id])) != nil {
			continue
		}
		found = true
		sum.Add(m)
	}
	return sum, found
}

// pruneOffPolicy deletes the off-policy keys of minutes before cutoff,
// then their index entries (so a failure between the two leaves index
// entries, which the next prune removes, never unindexed keys).
func (s *Store) pruneOffPolicy(ctx context.Context, cutoff int64) (int, error) {
	n := 0
	hi := "(" + strconv.FormatInt(cutoff, 10)
	for {
		keys, err := s.admin.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.kOpMinutes, Start: "-inf", Stop: hi, ByScore: true, Count: chunk}).Result()
		if err != nil || len(keys) == 0 {
			return n, err
		}
		dels := make([]*redis.IntCmd, len(keys))
		_, err = s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys { // one key per UNLINK: of many hash slots
				dels[i] = p.Unlink(ctx, k)
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		members := make([]any, len(keys))
		for i, k := range keys {
			members[i] = k
		}
		_, err = s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ZRem(ctx, s.kOpTouched, members...)
			p.ZRem(ctx, s.kOpMinutes, members...)
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, d := range dels {
			n += int(d.Val())
		}
	}
}
