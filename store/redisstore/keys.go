package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/auth"
)

// API keys and rate limits:
//
//	P keys       hash  name -> JSON of auth.Key (its hash, never the key)
//	P keys:used  hash  name -> last use, Unix ms
//	P rl:<hash>  string  the key's GCRA theoretical arrival time, Unix µs
//
// A change of keys is published on P registry ("put|delete keys/NAME"),
// so Subscribe wakes every replica.

func (s *Store) kKeys() string { return s.opt.Prefix + "keys" }
func (s *Store) kUsed() string { return s.opt.Prefix + "keys:used" }

// ListKeys returns every stored API key with its last use.
func (s *Store) ListKeys(ctx context.Context) ([]auth.Key, error) {
	var all, used *redis.MapStringStringCmd
	_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, s.kKeys())
		used = p.HGetAll(ctx, s.kUsed())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis list keys: %w", err)
	}
	out := make([]auth.Key, 0, len(all.Val()))
	for name, v := range all.Val() {
		var k auth.Key
		if err := json.Unmarshal([]byte(v), &k); err != nil {
			return nil, fmt.Errorf("redis key %s: %w", name, err)
		}
		if ms, err := strconv.ParseInt(used.Val()[name], 10, 64); err == nil {
			if t := time.UnixMilli(ms).UTC(); t.After(k.LastUsed) {
				k.LastUsed = t
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// PutKey stores a new API key (auth.ErrExists when the name is taken) and
// tells every replica.
func (s *Store) PutKey(ctx context.Context, k auth.Key) error {
	raw, err := json.Marshal(k)
	if err != nil {
		return err
	}
	ok, err := s.admin.HSetNX(ctx, s.kKeys(), k.Name, raw).Result()
	if err != nil {
		return fmt.Errorf("redis put key: %w", err)
	}
	if !ok {
		return auth.ErrExists
	}
	_, err = s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, s.kUsed(), k.Name)
		p.Publish(ctx, s.kChannel, "put keys/"+k.Name)
		return nil
	})
	return err
}

// DeleteKey removes the named API key and tells every replica, in one
// script run, so no replica hears of the deletion before it is made; the
// key's last use is removed after.
func (s *Store) DeleteKey(ctx context.Context, name string) (bool, error) {
	found, err := s.writeAndTell(ctx, s.kKeys(), name, nil, "delete", "keys/"+name)
	if err != nil {
		return false, fmt.Errorf("redis delete key: %w", err)
	}
	if err := s.admin.HDel(ctx, s.kUsed(), name).Err(); err != nil {
		return found, fmt.Errorf("redis delete key: %w", err)
	}
	return found, nil
}

// TouchKeys records last-use times. A touch racing a delete may leave a
// field in keys:used, which is ignored and cleared when the name is reused.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(used))
	for name, t := range used {
		args = append(args, name, t.UnixMilli())
	}
	if err := s.admin.HSet(ctx, s.kUsed(), args...).Err(); err != nil {
		return fmt.Errorf("redis touch keys: %w", err)
	}
	return nil
}

// gcraScript takes up to ARGV[3] tokens from the GCRA bucket at KEYS[1]
// (rate ARGV[1] per second, burst ARGV[2]) at Redis's own clock, so the
// replicas' clocks do not matter. It returns {granted, retry µs}.
var gcraScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local tau = burst * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local avail = math.floor((now + tau - tat) / interval + 1e-9)
if avail < 1 then
  return {0, math.ceil(tat - tau + interval - now)}
end
local n = math.min(want, avail)
tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {n, 0}
`)

// TakeTokens takes up to n tokens of the named shared token bucket in one
// atomic script (see auth.SharedLimiter): the tokens granted, or, when
// none, how long until the next one.
func (s *Store) TakeTokens(ctx context.Context, bucket string, rate float64, burst, n int) (int, time.Duration, error) {
	if rate <= 0 {
		return n, 0, nil
	}
	v, err := gcraScript.Run(ctx, s.rdb, []string{s.opt.Prefix + bucket}, rate, burst, n).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(v) != 2 {
		return 0, 0, errors.New("redis rate limit: unexpected reply")
	}
	return int(v[0]), time.Duration(v[1]) * time.Microsecond, nil
}

var (
	_ auth.Store = (*Store)(nil)
	_ auth.Taker = (*Store)(nil)
)
