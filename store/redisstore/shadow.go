package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/store"
)

// A shadow's keys, under its endpoint's hash tag like the endpoint's other
// keys (layout.go):
//
//	P{E}:shadow:<arm>                      hash  the shadow's sums, field -> integer (HINCRBY)
//	P{E}:shl:<prediction>                  string  a shadowed prediction's lists, TTL = to
//	                                       the end of its attribution window + store.ExpiryGrace

func (s *Store) shadowKey(endpoint, arm string) string {
	return s.endpointKey(endpoint, "shadow:"+arm)
}

func (s *Store) shadowListsKey(endpoint, prediction string) string {
	return s.endpointKey(endpoint, "shl:"+prediction)
}

// AddShadowSums adds deltas to the shadows' sums by HINCRBY, so every
// replica's increments add up exactly: one MULTI/EXEC transaction per
// endpoint (its keys share a hash slot; a cluster client runs each slot's
// transaction on its master).
func (s *Store) AddShadowSums(ctx context.Context, deltas map[store.ShadowKey]map[string]int64) error {
	if len(deltas) == 0 {
		return nil
	}
	byEndpoint := map[string][]store.ShadowKey{}
	for k := range deltas {
		byEndpoint[k.Endpoint] = append(byEndpoint[k.Endpoint], k)
	}
	for ep, keys := range byEndpoint {
		_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				key := s.shadowKey(k.Endpoint, k.Arm)
				for f, n := range deltas[k] {
					if n != 0 {
						p.HIncrBy(ctx, key, f, n)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redis add shadow sums of %s: %w", ep, err)
		}
	}
	return nil
}

// ShadowSums returns the sums of the endpoint's shadow arms, by arm; an
// arm with none is missing.
func (s *Store) ShadowSums(ctx context.Context, endpoint string, arms []string) (map[string]map[string]int64, error) {
	cmds := make([]*redis.MapStringStringCmd, len(arms))
	_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, arm := range arms {
			cmds[i] = p.HGetAll(ctx, s.shadowKey(endpoint, arm))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis shadow sums of %s: %w", endpoint, err)
	}
	out := map[string]map[string]int64{}
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		sums := make(map[string]int64, len(c.Val()))
		for f, v := range c.Val() {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				sums[f] = n
			}
		}
		out[arms[i]] = sums
	}
	return out, nil
}

// PutShadowLists keeps shadowed predictions' lists, each until its expiry
// (plus store.ExpiryGrace) by its key's TTL, in one pipeline.
func (s *Store) PutShadowLists(ctx context.Context, lists []store.ShadowList) error {
	now := s.now()
	_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, l := range lists {
			ttl := l.Expires.Add(store.ExpiryGrace).Sub(now)
			if ttl <= 0 {
				continue // expired already: nothing to keep
			}
			p.Set(ctx, s.shadowListsKey(l.Endpoint, l.Prediction), l.Value, max(ttl, time.Millisecond))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis put %d shadow lists: %w", len(lists), err)
	}
	return nil
}

// ShadowLists returns what PutShadowLists kept for the prediction, or nil
// when nothing is kept or it expired.
func (s *Store) ShadowLists(ctx context.Context, endpoint, prediction string, expires time.Time) ([]byte, error) {
	if s.now().After(expires.Add(store.ExpiryGrace)) {
		return nil, nil
	}
	v, err := s.admin.Get(ctx, s.shadowListsKey(endpoint, prediction)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis shadow lists: %w", err)
	}
	return v, nil
}
