package tfserving

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// MaxMsgSize bounds the size of one message sent to or received from TF
// Serving (gRPC's default of 4 MiB is too small for long candidate lists).
const MaxMsgSize = 64 << 20

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
		cc, err := grpc.NewClient(target, append(dialOptions(creds), p.DialOptions...)...)
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

// flowWindow is the flow-control window of a connection to TF Serving, per
// stream and per connection.
const flowWindow = 1 << 20

// dialOptions are the connection settings shared by every TF Serving
// connection.
func dialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMsgSize), grpc.MaxCallSendMsgSize(MaxMsgSize)),
		// Keepalive also sets TCP_USER_TIMEOUT to Timeout, so a peer
		// that vanished without a reset is dropped within 10s of unacked
		// data (health polls keep data flowing), not after the kernel's
		// ~15 minutes. Pings go out only while calls are in flight and
		// after 30s of silence, which TF Serving's default ping policy
		// (gRPC C++: at most one per 5 minutes without data) allows as
		// calls carry data.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, which pings the server after nearly every call at
		// moderate rates: an extra frame each way, with its writes and
		// wake-ups, for windows these messages never fill (a window is
		// credit, not memory).
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		// Reconnect promptly after TF Serving restarts: gRPC's default
		// backoff grows to 2 minutes, during which the arm would stay
		// unavailable although the server is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
}

// transportCredentials builds plaintext credentials for t == nil, else TLS
// 1.2+ with the configured roots and client certificate.
func transportCredentials(t *TLS) (credentials.TransportCredentials, error) {
	if t == nil {
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, invalid("backend.tls.ca_file", "%v", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, invalid("backend.tls.ca_file", "%s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = roots
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, invalid("backend.tls.cert_file", "loading the client certificate: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}

// errPoolClosed reports Open on a closed pool.
var errPoolClosed = errors.New("tfserving: pool is closed")
