package redisstore

import (
	"context"
	"strings"
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
// for each that differs. A server that refuses CONFIG (renamed or
// disabled, as managed services do, or denied by an ACL) is logged at
// debug level: the settings could not be checked, which is not a fault.
// The loop checks again after an outage (another server may answer then,
// such as a promoted replica); a setting still wrong the same way is not
// warned of twice. It runs on the background loop only.
func (s *Store) checkSettings() {
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.AdminTimeout)
	defer cancel()
	ok := true
	for _, c := range requiredSettings {
		m, err := s.admin.ConfigGet(ctx, c.name).Result()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Debug("could not check the redis settings (CONFIG GET refused or failed)", "addr", s.addr, "setting", c.name, "err", err)
			}
			return
		}
		v, found := m[c.name]
		if !found {
			s.log.Debug("could not check a redis setting: CONFIG GET did not report it", "addr", s.addr, "setting", c.name)
			ok = false
			continue
		}
		if strings.EqualFold(v, c.want) {
			delete(s.warned, c.name)
			continue
		}
		ok = false
		if s.warned[c.name] == v {
			continue // warned of this value already; a reconnection does not repeat it
		}
		s.warned[c.name] = v
		s.log.Warn("redis setting puts acknowledged feedback at risk: set "+c.name+" "+c.want,
			"addr", s.addr, "setting", c.name, "value", v, "required", c.want, "why", c.why)
	}
	if ok {
		s.log.Debug("redis settings as required", "addr", s.addr, "appendonly", "yes", "maxmemory-policy", "noeviction")
	}
}
