package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/internal/testenv"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/tlsconf"
	"github.com/modelgate/modelgate/tlsconf/tlsconftest"
)

// tlsServe starts the binary with TLS on a free gRPC port it picks first.
func tlsServe(t *testing.T, bin, tlsSection string) (string, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(tlsSection), 0o600); err != nil {
		t.Fatal(err)
	}
	_, url := startBinary(t, bin, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--grpc-addr", grpcAddr)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("the binary announced %s, want an https:// URL", url)
	}
	return url, grpcAddr
}

func httpsGet(url string, cfg *tls.Config) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// grpcCall calls Recommend on an unknown endpoint: NotFound means the call
// went through TLS to the gateway.
func grpcCall(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pb.NewGatewayClient(conn).Recommend(ctx, &pb.RecommendRequest{Endpoint: "nope", UserId: "u"})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return fmt.Errorf("Recommend: %w", err)
}

func serverSerial(t *testing.T, addr string, cfg *tls.Config) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "5"}, args...)...).CombinedOutput()
	return string(out), err
}

// The built binary serves HTTPS and gRPC over TLS, refuses plain HTTP and
// TLS 1.1, and serves a replaced certificate without a restart.
func TestServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", 2)
	// Relative paths are resolved against the config file's directory.
	cfgDir := filepath.Dir(srv.CertFile)
	cfg := filepath.Join(cfgDir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("tls:\n  cert_file: server.pem\n  key_file: server.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	grpcAddr := l.Addr().String()
	l.Close()
	_, url := startBinary(t, bin, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--grpc-addr", grpcAddr)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("announced %s, want https://", url)
	}
	client := &tls.Config{RootCAs: ca.Pool()}

	if st, err := httpsGet(url+"/healthz", client); err != nil || st != 200 {
		t.Fatalf("Go client trusting the CA: %d %v", st, err)
	}
	if _, ok := testenv.Optional(t, "Debian: apt-get install curl", "curl"); ok {
		if out, err := curl(t, "--cacert", ca.File, url+"/healthz"); err != nil || !strings.Contains(out, "ok") {
			t.Fatalf("curl --cacert: %v %s", err, out)
		}
		if out, err := curl(t, url+"/healthz"); err == nil {
			t.Fatalf("curl without the CA succeeded: %s", out)
		}
	}
	if _, err := httpsGet(url+"/healthz", &tls.Config{}); err == nil {
		t.Fatal("a client not trusting the CA connected")
	}
	if _, err := httpsGet(url+"/healthz", &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}); err == nil ||
		!strings.Contains(err.Error(), "version") {
		t.Fatalf("TLS 1.1 client: %v, want a protocol version error", err)
	}
	if st, err := httpsGet(strings.Replace(url, "https://", "http://", 1)+"/healthz", nil); err == nil && st == 200 {
		t.Fatal("plain HTTP to the TLS port succeeded")
	}
	if err := grpcCall(t, grpcAddr, client); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}

	// A renewed certificate is served within about a second, HTTP and gRPC.
	host := strings.TrimPrefix(url, "https://")
	if s := serverSerial(t, host, client); s != 2 {
		t.Fatalf("serial %d, want 2", s)
	}
	ca.Server(t, "server", 42)
	start := time.Now()
	waitUntil(t, 2500*time.Millisecond, func() bool {
		return serverSerial(t, host, client) == 42 && serverSerial(t, grpcAddr, client) == 42
	})
	t.Logf("renewed certificate served after %v", time.Since(start).Round(time.Millisecond))
	if st, err := httpsGet(url+"/healthz", client); err != nil || st != 200 {
		t.Fatalf("after the renewal: %d %v", st, err)
	}
}

// With client_ca_file, HTTP and gRPC clients must present a certificate
// from that CA.
func TestServeMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "server", 2)
	cli := ca.Client(t, "client", 3)
	stranger := tlsconftest.NewCA(t, t.TempDir(), "other").Client(t, "stranger", 4)
	url, grpcAddr := tlsServe(t, bin, fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: %s\n",
		srv.CertFile, srv.KeyFile, ca.File))

	with := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cli.TLS}}
	without := &tls.Config{RootCAs: ca.Pool()}
	wrong := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{stranger.TLS}}
	if st, err := httpsGet(url+"/healthz", with); err != nil || st != 200 {
		t.Fatalf("HTTP with a client certificate: %d %v", st, err)
	}
	if _, err := httpsGet(url+"/healthz", without); err == nil {
		t.Fatal("HTTP without a client certificate was served")
	}
	if _, err := httpsGet(url+"/healthz", wrong); err == nil {
		t.Fatal("HTTP with a certificate from another CA was served")
	}
	if err := grpcCall(t, grpcAddr, with); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	if err := grpcCall(t, grpcAddr, without); status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC without a client certificate: %v, want Unavailable", err)
	}
	if err := grpcCall(t, grpcAddr, wrong); status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC with a certificate from another CA: %v, want Unavailable", err)
	}
	if _, ok := testenv.Optional(t, "Debian: apt-get install curl", "curl"); ok {
		if out, err := curl(t, "--cacert", ca.File, "--cert", cli.CertFile, "--key", cli.KeyFile, url+"/healthz"); err != nil || !strings.Contains(out, "ok") {
			t.Fatalf("curl with a client certificate: %v %s", err, out)
		}
		if out, err := curl(t, "--cacert", ca.File, url+"/healthz"); err == nil {
			t.Fatalf("curl without a client certificate succeeded: %s", out)
		}
	}
}

// The gateway reaches TF Serving over mTLS through a version registered
// with backend.tls in its HTTP body, and refuses one without a client
// certificate.
func TestTFServingOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	srv := ca.Server(t, "tfserving", 2)
	cli := ca.Client(t, "gateway", 3)
	rl, err := tlsconf.New(srv.CertFile, srv.KeyFile, ca.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := tfservingtest.StartTLS(rl.Config(), ranker(map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tf.Stop)
	a := startApp(t, demoConfig(t, ""))

	withTLS := func(tlsJSON string) string {
		return strings.Replace(rankerBody(tf.Addr(), 1, 500), `"type": "tfserving",`, `"type": "tfserving", "tls": `+tlsJSON+`,`, 1)
	}
	var e errResp
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", rankerBody(tf.Addr(), 1, 500), &e); st != 400 || e.Error.Field != "backend.target" {
		t.Fatalf("plaintext towards a TLS TF Serving: %d %+v, want 400 on backend.target", st, e.Error)
	}
	noCert := withTLS(fmt.Sprintf(`{"ca_file": %q}`, ca.File))
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", noCert, &e); st != 400 || e.Error.Field != "backend.target" {
		t.Fatalf("TLS without a client certificate: %d %+v, want 400 on backend.target", st, e.Error)
	}
	body := withTLS(fmt.Sprintf(`{"ca_file": %q, "cert_file": %q, "key_file": %q, "server_name": "localhost"}`, ca.File, cli.CertFile, cli.KeyFile))
	if st := call(t, "PUT", a.url+"/v1/models/ranker/versions/1", body, &e); st != http.StatusCreated {
		t.Fatalf("register over mTLS: %d %+v", st, e.Error)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/tf", `{"arms": ["ranker@1"]}`, nil); st != http.StatusCreated {
		t.Fatalf("endpoint: %d", st)
	}
	var rec recResp
	if st := call(t, "POST", a.url+"/v1/endpoints/tf/recommend", map[string]any{"user_id": "u1", "candidates": cands, "k": 3}, &rec); st != 200 {
		t.Fatalf("recommend: %d", st)
	}
	if rec.Arm != "ranker@1" || rec.Fallback || len(rec.Items) != 3 || tf.LastRequest() == nil {
		t.Fatalf("recommend over mTLS: %+v", rec)
	}
	var mv map[string]any
	call(t, "GET", a.url+"/v1/models/ranker/versions/1", nil, &mv)
	if b, _ := mv["backend"].(map[string]any); b == nil || b["tls"] == nil {
		t.Fatalf("stored backend lacks its tls: %v", mv["backend"])
	}
}
