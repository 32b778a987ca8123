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
//	redis+cluster://[user:pass@]h1:6379,h2:6379  Redis Cluster: any nodes of it
//	                                             (seeds); the client learns the
//	                                             slot map and follows failovers
//	rediss+cluster://…                           the same over TLS
//
// redis:// and rediss:// are read by go-redis's ParseURL, query options
// included, except that a client's deadlines and retries are the
// caller's (Tuning, NewClient), and so is its pool size when the caller
// sets one. In a Sentinel URL, user and pass authenticate to the master;
// sentinels that require a password of their own take it from the query
// options sentinel_username and sentinel_password, the only ones allowed
// there. A sentinel without a port is on 26379. A cluster URL has no path
// (a cluster has database 0 only) and no query; a node without a port is on
// 6379. Its user and pass authenticate to every node.
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
	SchemeCluster       = "redis+cluster"
	SchemeClusterTLS    = "rediss+cluster"
	defaultSentinelPort = "26379"
	defaultRedisPort    = "6379"
	accepted            = "redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
)

// URL is a parsed Redis URL. Make it with Parse; it is immutable and safe
// for concurrent use.
type URL struct {
	single *redis.Options // redis://, rediss://
	// multi is a Sentinel URL's (MasterName set) or a cluster URL's
	// (IsClusterMode set).
	multi *redis.UniversalOptions
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
		return &URL{multi: o}, nil
	case SchemeCluster, SchemeClusterTLS:
		o, err := parseCluster(strings.ToLower(scheme) == SchemeClusterTLS, rest)
		if err != nil {
			return nil, fmt.Errorf("redis url: %s://: %w", strings.ToLower(scheme), err)
		}
		return &URL{multi: o}, nil
	default:
		return nil, fmt.Errorf("redis url: scheme %q is not one of %s", scheme, accepted)
	}
}

// parseSentinel reads what follows "redis+sentinel://". url.Parse is not
// used: its host is one host, not a list.
func parseSentinel(useTLS bool, rest string) (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{}
	rest, query, _ := strings.Cut(rest, "?")
	rest, _, _ = strings.Cut(rest, "#")
	authority, path, _ := strings.Cut(rest, "/")
	var err error
	o.Username, o.Password, o.Addrs, err = parseHosts(authority, "sentinel", defaultSentinelPort)
	if err != nil {
		return nil, err
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

// parseHosts reads "[user[:pass]@]host[:port],host[:port]…", the part of
// a sentinel or cluster URL before its path; what names the hosts in
// messages ("sentinel", "cluster node"), port the default port.
func parseHosts(authority, what, port string) (user, pass string, addrs []string, err error) {
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		u, p, hasPass := strings.Cut(authority[:i], ":")
		if user, err = url.PathUnescape(u); err != nil {
			return "", "", nil, errors.New("the user name is not valid percent-encoding")
		}
		if hasPass {
			if pass, err = url.PathUnescape(p); err != nil {
				return "", "", nil, errors.New("the password is not valid percent-encoding")
			}
		}
		authority = authority[i+1:]
	}
	if authority == "" {
		return "", "", nil, fmt.Errorf("no %s address; want host:port[,host:port…]", what)
	}
	for _, a := range strings.Split(authority, ",") {
		addr, err := hostAddr(a, what, port)
		if err != nil {
			return "", "", nil, err
		}
		addrs = append(addrs, addr)
	}
	return user, pass, addrs, nil
}

// parseCluster reads what follows "redis+cluster://": the seed nodes, no
// path beyond "/" or "/0" and no query.
func parseCluster(useTLS bool, rest string) (*redis.UniversalOptions, error) {
	rest, query, _ := strings.Cut(rest, "?")
	rest, _, _ = strings.Cut(rest, "#")
	authority, path, _ := strings.Cut(rest, "/")
	if query != "" {
		return nil, errors.New("query options are not supported in a cluster URL")
	}
	if path != "" && path != "0" {
		return nil, fmt.Errorf("path /%s: a cluster has database 0 only; leave the path out", path)
	}
	o := &redis.UniversalOptions{IsClusterMode: true}
	var err error
	if o.Username, o.Password, o.Addrs, err = parseHosts(authority, "cluster node", defaultRedisPort); err != nil {
		return nil, err
	}
	if useTLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

// hostAddr reads one host[:port] of a list (IPv6 in brackets), port being
// the default.
func hostAddr(a, what, port string) (string, error) {
	if a == "" {
		return "", fmt.Errorf("an empty %s address (two commas in a row, or one at an end)", what)
	}
	host := a
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		host = a[1 : len(a)-1] // a bracketed IPv6 address without a port
	} else if strings.HasPrefix(a, "[") || strings.Count(a, ":") == 1 {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", fmt.Errorf("%s address %q: want host:port", what, a)
		}
		host, port = h, p
	} else if strings.Contains(a, ":") {
		return "", fmt.Errorf("%s address %q: put an IPv6 address in brackets, [addr]:port", what, a)
	}
	if host == "" {
		return "", fmt.Errorf("%s address %q has no host", what, a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%s address %q: port %q is not a number from 1 to 65535", what, a, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Sentinel reports whether the URL names a master through Sentinel.
func (u *URL) Sentinel() bool { return u.multi != nil && u.multi.MasterName != "" }

// Cluster reports whether the URL names a Redis Cluster.
func (u *URL) Cluster() bool { return u.multi != nil && u.multi.IsClusterMode }

// Addr describes where the URL points, for messages: the server's
// host:port, "sentinel master NAME via h1:26379,h2:26379" or "cluster via
// h1:6379,h2:6379". It never holds a password.
func (u *URL) Addr() string {
	if u.Cluster() {
		return "cluster via " + strings.Join(u.multi.Addrs, ",")
	}
	if u.multi != nil {
		return fmt.Sprintf("sentinel master %s via %s", u.multi.MasterName, strings.Join(u.multi.Addrs, ","))
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

// NewClient returns a client of the URL's server, of the master that
// Sentinel names (following failovers) or of the cluster (a
// *redis.ClusterClient, which routes each command to the master of its
// keys' slot and follows MOVED and ASK redirections), with t applied; in a
// cluster PoolSize is per node. Every client made here honours its
// context's deadline, never retries a command after a network error (a
// retry would only stretch the caller's deadline; each caller has its own
// fallback) and dials once per attempt. It does no I/O: go-redis connects
// on first use. The caller closes it.
func (u *URL) NewClient(t Tuning) redis.UniversalClient {
	if u.multi != nil {
		o := *u.multi
		o.Addrs = append([]string(nil), o.Addrs...)
		if o.TLSConfig != nil {
			o.TLSConfig = o.TLSConfig.Clone()
		}
		o.PoolSize = t.PoolSize
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = t.DialTimeout, t.ReadTimeout, t.WriteTimeout
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.DialerRetries = 1
		o.DisableIdentity = true
		o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		return redis.NewUniversalClient(&o)
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
