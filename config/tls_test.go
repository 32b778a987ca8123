package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSSection(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"server.pem", "server.key", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(dir, "ca.pem")
	c, err := Parse([]byte("tls:\n  cert_file: server.pem\n  key_file: ./server.key\n  client_ca_file: "+abs+"\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: abs}
	if c.TLS != want || !c.TLS.Enabled() {
		t.Fatalf("TLS = %+v, want %+v (relative paths against the config's directory)", c.TLS, want)
	}
	if c, err := Parse([]byte("limits: {max_concurrent: 1}\n"), dir); err != nil || c.TLS.Enabled() {
		t.Fatalf("without a tls section: %+v %v", c.TLS, err)
	}
	for _, tc := range []struct{ doc, want string }{
		{"tls: {cert_file: server.pem}", "cert_file and key_file are required together"},
		{"tls: {key_file: server.key}", "cert_file and key_file are required together"},
		{"tls: {client_ca_file: ca.pem}", "cert_file and key_file are required together"},
		{"tls: {cert_file: missing.pem, key_file: server.key}", "tls.cert_file"},
		{"tls: {cert_file: server.pem, key_file: missing.key}", "tls.key_file"},
		{"tls: {cert_file: server.pem, key_file: server.key, client_ca_file: missing.pem}", "tls.client_ca_file"},
		{"tls: {cert_file: server.pem, key_file: server.key, ca_file: ca.pem}", "field ca_file not found"},
	} {
		if _, err := Parse([]byte(tc.doc), dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}
