package redislist

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/internal/redisurl"
)

// Settings of the connections to a Redis holding lists.
const (
	// HealthInterval is the period of the PING that decides whether the
	// lists' arms are healthy.
	HealthInterval = 2 * time.Second
	// ValidateTimeout bounds each call made to check a version at
	// registration, and each health PING.
	ValidateTimeout = 5 * time.Second
	// dialTimeout bounds one connection attempt. A request's own deadline
	// (timeout_ms) cuts it shorter on the request path.
	dialTimeout = time.Second
	// ioTimeout is the ceiling of one read or write; the context's
	// deadline is the usual bound.
	ioTimeout = 5 * time.Second
)

// pool shares one go-redis client, and its health poll, among the lists
// that read the same URL: created by the first that needs it, closed with
// the last. The zero pool is ready to use and safe for concurrent use.
type pool struct {
	mu      sync.Mutex
	clients map[string]*conn
}

// conn is one URL's client, its health and the lists using it.
type conn struct {
	rdb    redis.UniversalClient
	addr   string // host:port or the sentinel master, for messages without the URL's password
	health remote.Health
	refs   int // under pool.mu
}

// tuning is that of a client for the request path: its deadlines are the
// context's (the I/O timeouts are only a ceiling), and it never retries (a
// retry would only stretch the request's deadline; the fallback arm is the
// retry).
var tuning = redisurl.Tuning{DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout}

// acquire returns the conn for url, creating it (and starting its health
// poll) when there is none, and the function that releases this
// reference; the last release stops the poll and closes the client. It does
// no network I/O: go-redis connects on first use.
func (p *pool) acquire(url string) (*conn, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[url]
	if c == nil {
		u, err := redisurl.Parse(url)
		if err != nil {
			return nil, nil, err
		}
		c = &conn{rdb: u.NewClient(tuning), addr: u.Addr()}
		// PING at once and every HealthInterval, until the last release.
		c.health.Start(HealthInterval, ValidateTimeout, true, func(ctx context.Context) error {
			return c.wrap(c.rdb.Ping(ctx).Err())
		})
		if p.clients == nil {
			p.clients = make(map[string]*conn)
		}
		p.clients[url] = c
	}
	c.refs++
	var once sync.Once
	return c, func() { once.Do(func() { p.release(url, c) }) }, nil
}

func (p *pool) release(url string, c *conn) {
	p.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last {
		delete(p.clients, url)
	}
	p.mu.Unlock()
	if last {
		c.health.Stop()
		_ = c.rdb.Close()
	}
}

// setHealth records a call's finding about the server: healthy when err
// is nil.
func (c *conn) setHealth(err error) { c.health.Set(c.wrap(err)) }

// wrap names the server in a failure, nil staying nil.
func (c *conn) wrap(err error) error {
	if err != nil {
		return fmt.Errorf("redis at %s: %w", c.addr, err)
	}
	return nil
}
