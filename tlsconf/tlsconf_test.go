package tlsconf_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/tlsconf"
	"github.com/modelgate/modelgate/tlsconf/tlsconftest"
)

// serveHTTPS serves "ok" over TLS with the reloader's config.
func serveHTTPS(t *testing.T, r *tlsconf.Reloader) string {
	t.Helper()
	cfg := r.Config()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(tls.NewListener(l, cfg)) }()
	t.Cleanup(func() { _ = hs.Close() })
	return l.Addr().String()
}

func get(addr string, cfg *tls.Config) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return fmt.Errorf("unexpected body %q", b)
	}
	return nil
}

// serial handshakes and returns the serial of the server's certificate.
func serial(t *testing.T, addr string, cfg *tls.Config) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", 2)
	r, err := tlsconf.New(srv.CertFile, srv.KeyFile, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Config(); c.MinVersion != tls.VersionTLS12 || c.ClientAuth != tls.NoClientCert {
		t.Fatalf("config: min version %x, client auth %v", c.MinVersion, c.ClientAuth)
	}
	addr := serveHTTPS(t, r)

	if err := get(addr, &tls.Config{RootCAs: ca.Pool()}); err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	if err := get(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}); err != nil {
		t.Fatalf("client by the name localhost: %v", err)
	}
	if err := get(addr, &tls.Config{}); err == nil {
		t.Fatal("a client not trusting the CA connected")
	}
	if err := get(addr, &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}); err == nil ||
		!strings.Contains(err.Error(), "version") {
		t.Fatalf("TLS 1.1 client: %v, want a protocol version error", err)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP to the TLS port succeeded")
		}
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", 2)
	client := ca.Client(t, "client", 3)
	other := tlsconftest.NewCA(t, t.TempDir(), "other")
	stranger := other.Client(t, "stranger", 4)

	r, err := tlsconf.New(srv.CertFile, srv.KeyFile, ca.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Config(); c.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("client auth %v", c.ClientAuth)
	}
	addr := serveHTTPS(t, r)
	if err := get(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}}); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if err := get(addr, &tls.Config{RootCAs: ca.Pool()}); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := get(addr, &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a TLS 1.2 client without a certificate was served")
	}
	if err := get(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{stranger.TLS}}); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}

	// The client CA bundle is reloaded too: the other CA replaces it.
	raw, err := os.ReadFile(other.File)
	if err != nil {
		t.Fatal(err)
	}
	tlsconftest.WriteFile(t, ca.File, raw)
	testenv.WaitFor(t, 3*time.Second, func() bool {
		return get(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{stranger.TLS}}) == nil
	})
	if err := get(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}}); err == nil {
		t.Fatal("a client certificate from the replaced CA is still accepted")
	}
}

func TestReloadCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", 2)
	var logs bytes.Buffer
	r, err := tlsconf.New(srv.CertFile, srv.KeyFile, "", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHTTPS(t, r)
	client := &tls.Config{RootCAs: ca.Pool()}
	if s := serial(t, addr, client); s != 2 {
		t.Fatalf("serial %d, want 2", s)
	}

	// A renewed certificate is served within about a second.
	ca.Server(t, "server", 7)
	start := time.Now()
	testenv.WaitFor(t, 2500*time.Millisecond, func() bool { return serial(t, addr, client) == 7 })
	t.Logf("new certificate served after %v", time.Since(start).Round(time.Millisecond))

	// A broken file keeps the last good certificate, and is reported.
	tlsconftest.WriteFile(t, srv.CertFile, []byte("not a certificate"))
	time.Sleep(tlsconf.CheckInterval + 100*time.Millisecond)
	for i := 0; i < 3; i++ {
		if s := serial(t, addr, client); s != 7 {
			t.Fatalf("serial %d after a broken file, want 7 still", s)
		}
	}
	if !strings.Contains(logs.String(), "reloading the TLS files failed") {
		t.Fatalf("the failed reload was not logged: %q", logs.String())
	}
	// And a fixed one is picked up again.
	ca.Server(t, "server", 8)
	testenv.WaitFor(t, 2500*time.Millisecond, func() bool { return serial(t, addr, client) == 8 })
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", 2)
	other := ca.Server(t, "other", 3)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, cert, key, ca, want string
	}{
		{"no key", srv.CertFile, "", "", "both required"},
		{"missing certificate", missing, srv.KeyFile, "", "no such file"},
		{"missing key", srv.CertFile, missing, "", "no such file"},
		{"key of another certificate", srv.CertFile, other.KeyFile, "", "does not match"},
		{"missing CA", srv.CertFile, srv.KeyFile, missing, "no such file"},
		{"CA is not PEM", srv.CertFile, srv.KeyFile, srv.KeyFile, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconf.New(tc.cert, tc.key, tc.ca, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
