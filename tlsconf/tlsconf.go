// Package tlsconf builds the server-side TLS configuration of the gateway's
// listeners from PEM files, and reloads those files when they change, so a
// renewed certificate (or client CA bundle) is served without a restart.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval is how often, at most, the files are looked at again. The
// look happens during the first handshake after the interval; the other
// handshakes use the current certificate without waiting.
const CheckInterval = time.Second

// Reloader holds the current certificate (and client CA pool) read from its
// files, and reads them again when one of them changed.
type Reloader struct {
	certFile, keyFile, caFile string

	cert atomic.Pointer[tls.Certificate]
	pool atomic.Pointer[x509.CertPool]

	checked atomic.Int64 // unix nanoseconds of the last look at the files
	mu      sync.Mutex   // held while looking; guards the stamps
	certSt  [2]stamp
	caSt    stamp
	log     *slog.Logger // nil: failed reloads go unreported
	now     func() time.Time
}

// stamp identifies a version of a file: its identity, size and mtime.
type stamp struct {
	fi os.FileInfo
}

func (s stamp) same(fi os.FileInfo) bool {
	return s.fi != nil && os.SameFile(s.fi, fi) && s.fi.Size() == fi.Size() && s.fi.ModTime().Equal(fi.ModTime())
}

// New reads the key pair (and, when clientCAFile is not "", the PEM bundle of
// the CAs client certificates must chain to); it fails when a file is
// missing or invalid. log is where failed reloads are reported (the previous
// files stay in use); nil reports none.
func New(certFile, keyFile, clientCAFile string, log *slog.Logger) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are both required")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, caFile: clientCAFile, log: log, now: time.Now}
	if err := r.loadCert(true); err != nil {
		return nil, err
	}
	if clientCAFile != "" {
		if err := r.loadCA(true); err != nil {
			return nil, err
		}
	}
	r.checked.Store(r.now().UnixNano())
	return r, nil
}

// Config returns a new server configuration: TLS 1.2 at least, the current
// certificate, and, with a client CA, verified client certificates required.
// Fields such as NextProtos may be set on it before it is used; it is not to
// be changed afterwards.
func (r *Reloader) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			r.maybeReload()
			return r.cert.Load(), nil
		},
	}
	if r.caFile != "" {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = r.pool.Load()
		// Every connection proves its client certificate against the
		// current CA bundle: no session resumption past a CA change.
		cfg.SessionTicketsDisabled = true
		// The pool is per handshake, so a changed CA bundle applies to the
		// next connection: the returned config is cfg with the current pool.
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.maybeReload()
			c := cfg.Clone()
			c.GetConfigForClient = nil
			c.ClientCAs = r.pool.Load()
			return c, nil
		}
	}
	return cfg
}

// Certificate returns the certificate currently served.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// maybeReload looks at the files when the last look is CheckInterval old.
// Only one handshake does the looking; the others go on with what is loaded.
func (r *Reloader) maybeReload() {
	now := r.now().UnixNano()
	last := r.checked.Load()
	if now-last < int64(CheckInterval) || !r.checked.CompareAndSwap(last, now) {
		return
	}
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	r.report(r.loadCert(false))
	if r.caFile != "" {
		r.report(r.loadCA(false))
	}
}

func (r *Reloader) report(err error) {
	if err == nil {
		return
	}
	if l := r.log; l != nil {
		l.Error("reloading the TLS files failed; keeping the previous ones", "err", err)
	}
}

// loadCert reads the key pair if either file changed (or force). A pair that
// does not load (say, the certificate was written but not yet the key) is
// tried again at the next look.
func (r *Reloader) loadCert(force bool) error {
	cfi, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("tls: cert_file: %w", err)
	}
	kfi, err := os.Stat(r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: key_file: %w", err)
	}
	if !force && r.certSt[0].same(cfi) && r.certSt[1].same(kfi) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	r.certSt = [2]stamp{{cfi}, {kfi}}
	return nil
}

func (r *Reloader) loadCA(force bool) error {
	fi, err := os.Stat(r.caFile)
	if err != nil {
		return fmt.Errorf("tls: client_ca_file: %w", err)
	}
	if !force && r.caSt.same(fi) {
		return nil
	}
	raw, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("tls: client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return fmt.Errorf("tls: client_ca_file: %s holds no PEM certificate", r.caFile)
	}
	r.pool.Store(pool)
	r.caSt = stamp{fi}
	return nil
}
