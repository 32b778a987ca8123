package redisstore

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// setting is one Redis setting the store needs, checked at start-up.
type setting struct {
	name, want, why string
}

// requiredSettings are the server settings under which an acknowledged
// click survives: the AOF keeps it across a Redis restart, and noeviction
// makes a full Redis refuse writes (which then go to the write-ahead log)
// instead of dropping counters or dedupe keys.
var requiredSettings = []setting{
	{"appendonly", "yes", "without the append-only file a Redis restart loses the counters and dedupe keys written since its last snapshot"},
	{"maxmemory-policy", "noeviction", "an eviction policy lets a full Redis drop counters and dedupe keys; noeviction refuses the write instead, and the write-ahead log keeps it"},
}

// checkSettings reads requiredSettings with CONFIG GET and logs a warning
// for each that differs: on the one server, or on every node of a
// cluster (any replica may become a master). A server that refuses CONFIG
// (renamed or disabled, as managed services do, or denied by an ACL) is
// logged at debug level: the settings could not be checked, which is not
// a fault. The loop checks again after an outage (another server may
// answer then, such as a promoted replica); a setting still wrong the
// same way on the same server is not warned of twice. It runs on the
// background loop only.
func (s *Store) checkSettings() {
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.AdminTimeout)
	defer cancel()
	cc, ok := s.admin.(*redis.ClusterClient)
	if !ok {
		s.checkServer(ctx, s.admin, s.addr, "")
		return
	}
	var mu sync.Mutex
	var nodes []*redis.Client
	_ = cc.ForEachShard(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		nodes = append(nodes, c)
		mu.Unlock()
		return nil
	})
	for _, c := range nodes {
		addr := c.Options().Addr
		s.checkServer(ctx, c, addr, addr+" ")
	}
}

// checkServer checks one server's settings; key prefixes its entries in
// s.warned.
func (s *Store) checkServer(ctx context.Context, c redis.UniversalClient, addr, key string) {
	ok := true
	for _, r := range requiredSettings {
		m, err := c.ConfigGet(ctx, r.name).Result()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Debug("could not check the redis settings (CONFIG GET refused or failed)", "addr", addr, "setting", r.name, "err", err)
			}
			return
		}
		v, found := m[r.name]
		if !found {
			s.log.Debug("could not check a redis setting: CONFIG GET did not report it", "addr", addr, "setting", r.name)
			ok = false
			continue
		}
		if strings.EqualFold(v, r.want) {
			delete(s.warned, key+r.name)
			continue
		}
		ok = false
		if s.warned[key+r.name] == v {
			continue // warned of this value already; a reconnection does not repeat it
		}
		s.warned[key+r.name] = v
		s.log.Warn("redis setting puts acknowledged feedback at risk: set "+r.name+" "+r.want,
			"addr", addr, "setting", r.name, "value", v, "required", r.want, "why", r.why)
	}
	if ok {
		s.log.Debug("redis settings as required", "addr", addr, "appendonly", "yes", "maxmemory-policy", "noeviction")
	}
}
