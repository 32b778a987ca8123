// Package redislist serves precomputed recommendation lists stored in
// Redis: the backend type "redis". A batch job writes, per user (or per any
// request values the key template names), a sorted set of item ids scored
// by the job, or a JSON array of {"id", "score"} objects; an arm of this
// type answers a request with the top of the user's list, else of the
// default list, else with an error of class not_found, so the request falls
// back.
//
// # One round trip
//
// Each request is one EVALSHA of a small read-only Lua script (script.go),
// which picks the user's key, else the default key, checks the value's
// type and reads it: the top entries of a sorted set, the scores of the
// request's candidates (ZMSCORE), or a JSON value no longer than
// MaxJSONBytes. A pipeline could not make the second key's read depend on
// the first key's existence without reading both lists every time. The
// script is sent whole (EVAL) only when the server does not have it cached,
// after a restart or SCRIPT FLUSH. A batch of requests (List.PredictBatch)
// is one pipeline of the script's runs: one round trip for all of them.
//
// # Bounds
//
// A sorted set is never read whole: without candidates the script reads
// its k + len(exclude) best entries, plus the entries tied with the last
// of them (at most as many again), which is what makes the order of equal
// scores the gateway's own (by id, ascending) rather than Redis's. With
// candidates it reads one score per candidate. A JSON list is refused
// (bad_output) above MaxJSONBytes or MaxJSONItems entries.
//
// # Connections
//
// A Driver keeps one go-redis client per distinct URL, shared by the
// versions that read it, with one goroutine that PINGs the server every
// HealthInterval: an arm is healthy while the last PING was answered. The
// client and its goroutine end when the last version using them is closed.
package redislist

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/internal/redisurl"
)

// Type is the backend type a model version names to be served by this
// driver ("type" in its backend config).
const Type = "redis"

// Formats of a stored list.
const (
	// FormatZSet is a sorted set: item ids as members, scored.
	FormatZSet = "zset"
	// FormatJSON is a string holding a JSON array of {"id", "score"}.
	FormatJSON = "json"
)

// Spec is the backend section of a redis version:
//
//	{"type": "redis", "url": "redis://127.0.0.1:6379/0",
//	 "key": "recs:{model}:{version}:{user_id}",
//	 "default_key": "recs:{model}:{version}:popular",
//	 "format": "zset" | "json", "timeout_ms": 20}
//
// The zero value (from Driver.NewConfig) decodes a section; Check
// validates it.
type Spec struct {
	// URL is the Redis holding the lists, redis://[user:pass@]host:port/db,
	// rediss://… for TLS, or redis+sentinel://[user:pass@]h1:26379,…/MASTER[/db]
	// for the master Sentinel names (read as package redisurl reads it;
	// Cluster is refused); "" means the server's --redis-url. It is
	// stored as registered, so a version without one follows the server's.
	URL string `json:"url,omitempty"`
	// Key is the template of the user's key: literal text with
	// {model}, {version}, {user_id} and {context.KEY} placeholders.
	Key string `json:"key,omitempty"`
	// DefaultKey, optional, is the template of the list served when the
	// user's key does not exist (or cannot be built); {user_id} is not
	// allowed.
	DefaultKey string `json:"default_key,omitempty"`
	// Format is FormatZSet or FormatJSON; Check fills in FormatZSet.
	Format string `json:"format,omitempty"`
	// TimeoutMS is the deadline of one lookup in milliseconds; 0 leaves
	// the gateway's default.
	TimeoutMS int `json:"timeout_ms,omitempty"`

	serverURL string // the server's --redis-url, from the driver
}

// Check requires a key template, checks both templates' placeholders and
// the URL, and fills in the default format.
func (s *Spec) Check() error {
	if s.Key == "" {
		return fault.Field("backend.key", "missing_field", "a redis backend needs a key template, e.g. \"recs:{model}:{version}:{user_id}\"")
	}
	if _, err := parseTemplate(s.Key, checkName, checkName, true); err != nil {
		return fault.Field("backend.key", "invalid_backend", "%v", err)
	}
	if _, err := parseTemplate(s.DefaultKey, checkName, checkName, false); err != nil {
		return fault.Field("backend.default_key", "invalid_backend", "%v", err)
	}
	switch s.Format {
	case "":
		s.Format = FormatZSet
	case FormatZSet, FormatJSON:
	default:
		return fault.Field("backend.format", "invalid_backend", "%q is not a format (want %q or %q)", s.Format, FormatZSet, FormatJSON)
	}
	url := s.url()
	if url == "" {
		return fault.Field("backend.url", "missing_field", "give the Redis holding the lists (redis://host:port/db); the server runs without --redis-url to default to")
	}
	field := "backend.url"
	if s.URL == "" {
		field = "backend" // the server's URL is at fault, not the body
	}
	u, err := redisurl.Parse(url)
	if err != nil {
		return fault.Field(field, "invalid_backend", "%v", err)
	}
	if u.Cluster() {
		// One lookup reads the user's list and the default list in one
		// script, which a cluster runs only on keys of one hash slot.
		return fault.Field(field, "invalid_backend", "lists cannot be read from a Redis Cluster (a lookup reads two keys in one script); give a redis:// or redis+sentinel:// URL")
	}
	return nil
}

// checkName stands for the model and version names, unknown to Check:
// Load parses the templates again with the real ones.
const checkName = "_"

// Timeout is TimeoutMS as a duration.
func (s *Spec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// url is the Redis the version reads: its own, else the server's.
func (s *Spec) url() string {
	if s.URL != "" {
		return s.URL
	}
	return s.serverURL
}

// format is Format, FormatZSet for a stored record without one.
func (s *Spec) format() string {
	if s.Format == "" {
		return FormatZSet
	}
	return s.Format
}

// Driver is the "redis" backend. Its versions share one client per URL.
// Make it with NewDriver (the zero value has no script and is not usable);
// it is safe for concurrent use.
type Driver struct {
	serverURL string
	script    *redis.Script // lookupScript, with its SHA1 computed once
	pool      pool
}

// NewDriver returns the driver whose versions without a url read
// serverURL, the server's --redis-url ("" when it has none: such versions
// are refused).
func NewDriver(serverURL string) *Driver {
	return &Driver{serverURL: serverURL, script: redis.NewScript(lookupScript)}
}

// Type returns Type.
func (*Driver) Type() string { return Type }

// NewConfig returns a new *Spec that defaults to the server's URL.
func (d *Driver) NewConfig() backend.Config { return &Spec{serverURL: d.serverURL} }

// SpanName is "redis.predict".
func (*Driver) SpanName() string { return "redis.predict" }

// Load builds the version's List. With opt.Validate (registration) the
// server must answer PING and a default_key that names one key (no
// {context.KEY}) must exist with the format's type (a JSON one must also
// decode), else the error is a 400 invalid_model naming the field. Without
// it (start-up), nothing is asked of the server: an unreachable one leaves
// the arm unhealthy until a PING is answered.
func (d *Driver) Load(ctx context.Context, cfg backend.Config, opt backend.LoadOptions) (backend.Scorer, error) {
	s, ok := cfg.(*Spec)
	if !ok {
		return nil, fmt.Errorf("redis: config %T is not a redis spec", cfg)
	}
	l, err := newList(s, opt.Model, opt.Version, d.script)
	if err != nil {
		return nil, err
	}
	c, release, err := d.pool.acquire(s.url())
	if err != nil {
		return nil, fault.Field("backend.url", "invalid_model", "%v", err)
	}
	l.conn, l.release = c, release
	if opt.Validate {
		if err := l.validate(ctx); err != nil {
			release()
			return nil, err
		}
		c.setHealth(nil)
	}
	return l, nil
}
