package oip_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/backend/oip/oiptest"
	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/tlsconf/tlsconftest"
)

// Mutual TLS over both protocols; a client the server does not trust, or
// that does not trust the server, is refused at registration against the
// target, and unreadable files against their field.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, dir, "ca")
	server := ca.Server(t, "server", 2)
	client := ca.Client(t, "client", 3)
	s, err := oiptest.StartTLS(&tls.Config{Certificates: []tls.Certificate{server.TLS}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, ranker())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	p := plan(t, fullSpec)
	cases := []struct {
		name  string
		tls   *remote.TLS
		field string // "" for success
	}{
		{"mTLS", &remote.TLS{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "localhost"}, ""},
		{"no client certificate", &remote.TLS{CAFile: ca.File, ServerName: "localhost"}, "backend.target"},
		{"wrong server name", &remote.TLS{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "other.test"}, "backend.target"},
		{"unknown CA", &remote.TLS{CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "localhost"}, "backend.target"},
		{"plaintext", nil, "backend.target"},
		{"CA file is not PEM", &remote.TLS{CAFile: client.KeyFile}, "backend.tls.ca_file"},
		{"certificate file missing", &remote.TLS{CertFile: dir + "/none.pem", KeyFile: client.KeyFile}, "backend.tls.cert_file"},
	}
	for _, protocol := range protocols {
		for _, tc := range cases {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				cfg := config(s, protocol, "ranker", p)
				cfg.TLS = tc.tls
				m, err := oip.Open(context.Background(), cfg, true)
				if tc.field == "" {
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					defer m.Close()
					if _, err := m.Predict(context.Background(), request(t, p, "u", []string{"a", "b"}, 2)); err != nil {
						t.Fatalf("Predict over TLS: %v", err)
					}
					return
				}
				if f := fault.As(err); f == nil || f.Field != tc.field {
					if m != nil {
						m.Close()
					}
					t.Fatalf("Open = %v, want an error on %s", err, tc.field)
				}
			})
		}
	}
}
