package router

import (
	"hash/maphash"
	"sync"
	"time"
)

// stickyShards and stickyPerShard bound the sticky assignments kept in
// memory (about a million users).
const (
	stickyShards   = 64
	stickyPerShard = 1 << 14
)

type stickyEntry struct {
	arm     string
	prop    float64
	expires time.Time
}

// stickyStore remembers which arm each user got, per endpoint, until it
// expires. Sharded so that no one lock is on every request's path. The zero
// value is ready to use.
type stickyStore struct {
	seed   maphash.Seed
	once   sync.Once
	shards [stickyShards]struct {
		mu sync.Mutex
		m  map[string]stickyEntry
	}
}

func (s *stickyStore) shard(key string) int {
	s.once.Do(func() { s.seed = maphash.MakeSeed() })
	return int(maphash.String(s.seed, key) % stickyShards)
}

func stickyKey(endpoint, user string) string { return endpoint + "\x00" + user }

// get returns the user's arm and the propensity it was assigned with.
func (s *stickyStore) get(endpoint, user string, now time.Time) (string, float64, bool) {
	key := stickyKey(endpoint, user)
	sh := &s.shards[s.shard(key)]
	sh.mu.Lock()
	e, ok := sh.m[key]
	if ok && !now.Before(e.expires) {
		delete(sh.m, key)
		ok = false
	}
	sh.mu.Unlock()
	return e.arm, e.prop, ok
}

// put assigns an arm to a user until expires. A full shard first drops its
// expired entries, then arbitrary ones.
func (s *stickyStore) put(endpoint, user, arm string, prop float64, expires time.Time) {
	key := stickyKey(endpoint, user)
	sh := &s.shards[s.shard(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[string]stickyEntry)
	}
	if len(sh.m) >= stickyPerShard {
		now := time.Now()
		for k, e := range sh.m {
			if !now.Before(e.expires) {
				delete(sh.m, k)
			}
		}
		for k := range sh.m {
			if len(sh.m) < stickyPerShard*3/4 {
				break
			}
			delete(sh.m, k)
		}
	}
	sh.m[key] = stickyEntry{arm: arm, prop: prop, expires: expires}
}
