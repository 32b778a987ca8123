// Package remote holds what the backends that call a model server over the
// network share: the TLS settings of a backend section and the options of a
// long-lived gRPC client connection to a model server.
package remote

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/modelgate/modelgate/fault"
)

// TLS configures TLS towards a model server (TLS 1.2 at least). CAFile is a
// PEM bundle of the CAs that sign the server's certificate (the system roots
// when ""); CertFile and KeyFile, given together, are the client certificate
// for mTLS; ServerName overrides the name checked in the server's certificate
// (the target's host when ""). The files are read when a connection is
// created.
type TLS struct {
	CAFile     string `json:"ca_file,omitempty"`
	CertFile   string `json:"cert_file,omitempty"`
	KeyFile    string `json:"key_file,omitempty"`
	ServerName string `json:"server_name,omitempty"`
}

// Check requires cert_file and key_file together. Its errors are
// *fault.Error values naming the field under "backend.tls".
func (t *TLS) Check() error {
	if t == nil || (t.CertFile == "") == (t.KeyFile == "") {
		return nil
	}
	if t.CertFile == "" {
		return fault.Field("backend.tls.cert_file", "invalid_backend", "required with key_file")
	}
	return fault.Field("backend.tls.key_file", "invalid_backend", "required with cert_file")
}

// ClientConfig reads the files and returns the client's TLS configuration.
// Its errors are *fault.Error values (code invalid_model) naming the file's
// field under "backend.tls".
func (t *TLS) ClientConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fault.Field("backend.tls.ca_file", "invalid_model", "%v", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fault.Field("backend.tls.ca_file", "invalid_model", "%s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = roots
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fault.Field("backend.tls.cert_file", "invalid_model", "loading the client certificate: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// TransportCredentials are plaintext credentials for t == nil, else TLS
// with t's ClientConfig.
func TransportCredentials(t *TLS) (credentials.TransportCredentials, error) {
	if t == nil {
		return insecure.NewCredentials(), nil
	}
	tc, err := t.ClientConfig()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// MaxMsgSize bounds the size of one gRPC message sent to or received from a
// model server (gRPC's default of 4 MiB is too small for long candidate
// lists).
const MaxMsgSize = 64 << 20

// flowWindow is the flow-control window of a connection to a model server,
// per stream and per connection.
const flowWindow = 1 << 20

// DialOptions are the settings of a long-lived gRPC connection to a model
// server with the given credentials.
func DialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMsgSize), grpc.MaxCallSendMsgSize(MaxMsgSize)),
		// Keepalive also sets TCP_USER_TIMEOUT to Timeout, so a peer
		// that vanished without a reset is dropped within 10s of unacked
		// data (health polls keep data flowing), not after the kernel's
		// ~15 minutes. Pings go out only while calls are in flight and
		// after 30s of silence, which the default ping policy of gRPC C++
		// servers such as TF Serving and Triton (at most one per 5
		// minutes without data) allows as calls carry data.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, which pings the server after nearly every call at
		// moderate rates: an extra frame each way, with its writes and
		// wake-ups, for windows these messages never fill (a window is
		// credit, not memory).
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		// Reconnect promptly after the server restarts: gRPC's default
		// backoff grows to 2 minutes, during which the arm would stay
		// unavailable although the server is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
}
