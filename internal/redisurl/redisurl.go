// Package redisurl turns the Redis URLs modelgate accepts into go-redis
// clients, in one place for every part that connects to Redis (the shared
// store of --redis-url and the redis backend's lists):
//
//	redis://[user:pass@]host:port/db             one server
//	rediss://[user:pass@]host:port/db            one server, over TLS
//	redis+sentinel://[user:pass@]h1:26379,h2:26379/MASTER_NAME[/db]
//	                                             the master that Sentinel names;
//	                                             the client follows failovers
//	rediss+sentinel://…                          the same over TLS, to the
//	                                             sentinels and the master
//
// redis:// and rediss:// are read by go-redis's ParseURL, query options
// included, except that a client's deadlines and retries are the
// caller's (Tuning, NewClient), and so is its pool size when the caller
// sets one. In a Sentinel URL, user and pass authenticate to the master;
// sentinels that require a password of their own take it from the query
// options sentinel_username and sentinel_password, the only ones allowed
// there. A sentinel without a port is on 26379.
//
// redis+cluster:// is refused: Redis Cluster is not supported yet (every
// multi-key script of the store would have to touch keys of one hash slot).
package redisurl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Schemes accepted by Parse.
const (
	SchemeRedis         = "redis"
	SchemeRedisTLS      = "rediss"
	SchemeSentinel      = "redis+sentinel"
	SchemeSentinelTLS   = "rediss+sentinel"
	schemeCluster       = "redis+cluster"
	schemeClusterTLS    = "rediss+cluster"
	defaultSentinelPort = "26379"
	accepted            = "redis://, rediss://, redis+sentinel:// or rediss+sentinel://"
)

// ErrClusterUnsupported is returned by Parse for redis+cluster:// URLs.
var ErrClusterUnsupported = errors.New("redis+cluster:// (Redis Cluster) is not supported yet; use redis:// for one primary or redis+sentinel:// for automatic failover")

// URL is a parsed Redis URL. Make it with Parse; it is immutable and safe
// for concurrent use.
type URL struct {
	single   *redis.Options         // redis://, rediss://
	failover *redis.FailoverOptions // redis+sentinel://, rediss+sentinel://
}

// Parse reads a Redis URL of one of the forms in the package doc. Its
// errors name what is wrong and never repeat the password.
func Parse(raw string) (*URL, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("redis url: no scheme; want %s", accepted)
	}
	switch strings.ToLower(scheme) {
	case SchemeRedis, SchemeRedisTLS:
		o, err := redis.ParseURL(raw)
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // url.Error repeats the URL, password and all
			}
			return nil, fmt.Errorf("redis url: %w", err)
		}
		return &URL{single: o}, nil
	case SchemeSentinel, SchemeSentinelTLS:
		o, err := parseSentinel(strings.ToLower(scheme) == SchemeSentinelTLS, rest)
		if err != nil {
			return nil, fmt.Errorf("redis url: %s://: %w", strings.ToLower(scheme), err)
		}
		return &URL{failover: o}, nil
	case schemeCluster, schemeClusterTLS:
		return nil, fmt.Errorf("redis url: %w", ErrClusterUnsupported)
	default:
		return nil, fmt.Errorf("redis url: scheme %q is not one of %s", scheme, accepted)
	}
}

// parseSentinel reads what follows "redis+sentinel://". url.Parse is not
// used: its host is one host, not a list.
func parseSentinel(useTLS bool, rest string) (*redis.FailoverOptions, error) {
	o := &redis.FailoverOptions{}
	rest, query, _ := strings.Cut(rest, "?")
	rest, _, _ = strings.Cut(rest, "#")
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(authority[:i], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, errors.New("the user name is not valid percent-encoding")
		}
		if hasPass {
			if o.Password, err = url.PathUnescape(pass); err != nil {
				return nil, errors.New("the password is not valid percent-encoding")
			}
		}
		authority = authority[i+1:]
	}
	if authority == "" {
		return nil, errors.New("no sentinel address; want host:port[,host:port…]")
	}
	for _, a := range strings.Split(authority, ",") {
		addr, err := sentinelAddr(a)
		if err != nil {
			return nil, err
		}
		o.SentinelAddrs = append(o.SentinelAddrs, addr)
	}

	parts := strings.Split(path, "/")
	if len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1] // a trailing slash
	}
	switch len(parts) {
	case 0:
		return nil, errors.New("no master name; want …/MASTER_NAME[/db]")
	case 1, 2:
	default:
		return nil, fmt.Errorf("path /%s has %d parts; want /MASTER_NAME[/db]", path, len(parts))
	}
	name, err := url.PathUnescape(parts[0])
	if err != nil || name == "" {
		return nil, fmt.Errorf("master name %q is empty or not valid percent-encoding", parts[0])
	}
	o.MasterName = name
	if len(parts) == 2 {
		db, err := strconv.Atoi(parts[1])
		if err != nil || db < 0 {
			return nil, fmt.Errorf("database %q is not a number ≥ 0", parts[1])
		}
		o.DB = db
	}

	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	for k, v := range q {
		switch k {
		case "sentinel_username":
			o.SentinelUsername = v[len(v)-1]
		case "sentinel_password":
			o.SentinelPassword = v[len(v)-1]
		default:
			return nil, fmt.Errorf("query option %q is not supported; only sentinel_username and sentinel_password are", k)
		}
	}
	if useTLS {
		// No ServerName: each dial checks the certificate against the
		// host it dials, sentinel or master.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

func sentinelAddr(a string) (string, error) {
	if a == "" {
		return "", errors.New("an empty sentinel address (two commas in a row, or one at an end)")
	}
	host, port := a, defaultSentinelPort
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		host = a[1 : len(a)-1] // a bracketed IPv6 address without a port
	} else if strings.HasPrefix(a, "[") || strings.Count(a, ":") == 1 {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", fmt.Errorf("sentinel address %q: want host:port", a)
		}
		host, port = h, p
	} else if strings.Contains(a, ":") {
		return "", fmt.Errorf("sentinel address %q: put an IPv6 address in brackets, [addr]:port", a)
	}
	if host == "" {
		return "", fmt.Errorf("sentinel address %q has no host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("sentinel address %q: port %q is not a number from 1 to 65535", a, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Sentinel reports whether the URL names a master through Sentinel.
func (u *URL) Sentinel() bool { return u.failover != nil }

// Addr describes where the URL points, for messages: the server's
// host:port, or "sentinel master NAME via h1:26379,h2:26379". It never
// holds a password.
func (u *URL) Addr() string {
	if u.failover != nil {
		return fmt.Sprintf("sentinel master %s via %s", u.failover.MasterName, strings.Join(u.failover.SentinelAddrs, ","))
	}
	return u.single.Addr
}

// Tuning is what a caller sets on a client: the pool and the socket
// deadlines. A zero PoolSize means go-redis's default; zero durations
// mean go-redis's defaults.
type Tuning struct {
	PoolSize                               int
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
}

// NewClient returns a client of the URL's server, or of the master that
// Sentinel names (following failovers), with t applied. Every client made
// here honours its context's deadline, never retries a command (a retry
// would only stretch the caller's deadline; each caller has its own
// fallback) and dials once per attempt. It does no I/O: go-redis connects
// on first use. The caller closes it.
func (u *URL) NewClient(t Tuning) *redis.Client {
	if u.failover != nil {
		o := *u.failover
		o.SentinelAddrs = append([]string(nil), o.SentinelAddrs...)
		if o.TLSConfig != nil {
			o.TLSConfig = o.TLSConfig.Clone()
		}
		o.PoolSize = t.PoolSize
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = t.DialTimeout, t.ReadTimeout, t.WriteTimeout
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.DialerRetries = 1
		o.DisableIdentity = true
		return redis.NewFailoverClient(&o)
	}
	o := *u.single
	if o.TLSConfig != nil {
		o.TLSConfig = o.TLSConfig.Clone()
	}
	if t.PoolSize > 0 {
		o.PoolSize = t.PoolSize
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = t.DialTimeout, t.ReadTimeout, t.WriteTimeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(&o)
}
