package tfserving

import (
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/fault"
)

// MaxMsgSize bounds the size of one message sent to or received from TF
// Serving (gRPC's default of 4 MiB is too small for long candidate lists).
const MaxMsgSize = remote.MaxMsgSize

// Pool shares gRPC connections between Models: one long-lived connection per
// (target, TLS settings), created by the first Open that needs it and closed
// when the last Model using it is closed. The zero value is ready to use; a
// Pool is safe for concurrent use and must not be copied after first use.
type Pool struct {
	// DialOptions are added to every connection's own settings, e.g. a
	// tracing stats handler so TF Serving receives the traceparent. Set it
	// before the first Open; nil adds nothing.
	DialOptions []grpc.DialOption

	mu     sync.Mutex
	conns  map[connKey]*sharedConn
	closed bool
}

// NewPool returns an empty pool whose connections also get opts (see
// DialOptions); NewPool() is the same as new(Pool).
func NewPool(opts ...grpc.DialOption) *Pool { return &Pool{DialOptions: opts} }

type connKey struct {
	target string
	tls    bool
	cfg    TLS
}

type sharedConn struct {
	cc   *grpc.ClientConn
	refs int
}

// Close closes every connection the pool holds, whether Models still use
// them or not: call it at shutdown, after the Models' last calls. Their
// later calls fail as unavailable; Open fails after Close.
func (p *Pool) Close() error {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.cc.Close())
	}
	return errors.Join(errs...)
}

// acquire returns the shared connection for target and t, creating it when
// there is none, and the function that releases this reference. It does no
// network I/O (connections are made on first use and kept up by gRPC), so an
// unreachable target is not an error here.
func (p *Pool) acquire(target string, t *TLS) (*grpc.ClientConn, func(), error) {
	key := connKey{target: target}
	if t != nil {
		key.tls, key.cfg = true, *t
	}
	p.mu.Lock()
	c := p.conns[key]
	if c != nil {
		c.refs++
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, nil, errPoolClosed
	}
	if c == nil {
		// Build the connection outside the lock: reading certificate files
		// is I/O.
		creds, err := transportCredentials(t)
		if err != nil {
			return nil, nil, err
		}
		cc, err := grpc.NewClient(target, append(remote.DialOptions(creds), p.DialOptions...)...)
		if err != nil {
			return nil, nil, invalid("backend.target", "%v", err)
		}
		p.mu.Lock()
		switch {
		case p.closed:
			p.mu.Unlock()
			cc.Close()
			return nil, nil, errPoolClosed
		case p.conns[key] != nil: // another Open won the race
			c = p.conns[key]
			c.refs++
			cc.Close() // never used: no I/O to wait for
		default:
			if p.conns == nil {
				p.conns = make(map[connKey]*sharedConn)
			}
			c = &sharedConn{cc: cc, refs: 1}
			p.conns[key] = c
		}
		p.mu.Unlock()
	}
	var once sync.Once
	release := func() { once.Do(func() { p.release(key, c) }) }
	return c.cc, release, nil
}

func (p *Pool) release(key connKey, c *sharedConn) {
	p.mu.Lock()
	c.refs--
	last := c.refs == 0 && p.conns[key] == c
	if last {
		delete(p.conns, key)
	}
	p.mu.Unlock()
	if last {
		c.cc.Close()
	}
}

// transportCredentials builds plaintext credentials for t == nil, else TLS
// 1.2+ with the configured roots and client certificate. Its errors are
// *ValidationErrors naming the file at fault.
func transportCredentials(t *TLS) (credentials.TransportCredentials, error) {
	creds, err := remote.TransportCredentials(t)
	if f := fault.As(err); f != nil {
		return nil, invalid(f.Field, "%s", f.Message)
	}
	return creds, err
}

// errPoolClosed reports Open on a closed pool.
var errPoolClosed = errors.New("tfserving: pool is closed")
