package redislist

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
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
	rdb     *redis.Client
	addr    string // host:port, for messages without the URL's password
	healthy atomic.Bool
	lastErr atomic.Pointer[error]
	refs    int // under pool.mu

	cancel context.CancelFunc
	done   chan struct{}
}

// clientOptions parses url (redis:// or rediss://, as go-redis's ParseURL
// reads them) into the options of a client for the request path: its
// deadlines are the context's, and it never retries (a retry would only
// stretch the request's deadline; the fallback arm is the retry).
func clientOptions(url string) (*redis.Options, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return o, nil
}

// acquire returns the conn for url, creating it (and starting its health
// poll) when there is none, and the function that releases this
// reference; the last release stops the poll and closes the client. It does
// no network I/O: go-redis connects on first use.
func (p *pool) acquire(url string) (*conn, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[url]
	if c == nil {
		o, err := clientOptions(url)
		if err != nil {
			return nil, nil, err
		}
		c = &conn{rdb: redis.NewClient(o), addr: o.Addr, done: make(chan struct{})}
		noPoll := error(errors.New("no PING has been answered yet"))
		c.lastErr.Store(&noPoll)
		var ctx context.Context
		ctx, c.cancel = context.WithCancel(context.Background())
		go c.healthLoop(ctx)
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
		c.cancel()
		<-c.done
		_ = c.rdb.Close()
	}
}

// healthLoop PINGs the server at once and then every HealthInterval until
// ctx is done.
func (c *conn) healthLoop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(HealthInterval)
	defer t.Stop()
	for {
		c.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *conn) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, min(HealthInterval, ValidateTimeout))
	defer cancel()
	err := c.rdb.Ping(pctx).Err()
	if ctx.Err() != nil {
		return // closing
	}
	c.setHealth(err)
}

func (c *conn) setHealth(err error) {
	if err != nil {
		err = fmt.Errorf("redis at %s: %w", c.addr, err)
		c.lastErr.Store(&err)
	}
	c.healthy.Store(err == nil)
}
