package tfserving_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
)

// testPKI writes a CA, a server certificate for "tfserving.test" and a
// client certificate, and returns the server's TLS config (requiring client
// certificates from the CA) and the file names.
func testPKI(t *testing.T) (*tls.Config, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{}
	write := func(name, typ string, der []byte) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		files[name] = path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write("ca.pem", "CERTIFICATE", caDER)

	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".pem", "CERTIFICATE", der)
		write(name+".key", "EC PRIVATE KEY", keyDER)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	serverCert := leaf("tfserving.test", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: roots,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, files
}

func TestTLS(t *testing.T) {
	serverTLS, files := testPKI(t)
	srv, err := tfservingtest.StartTLS(serverTLS, ranker())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()

	tests := []struct {
		name    string
		tls     *tfserving.TLS
		wantErr string // the ValidationError's field, "" for success
	}{
		{"mTLS", &tfserving.TLS{CAFile: files["ca.pem"], CertFile: files["client.pem"], KeyFile: files["client.key"], ServerName: "tfserving.test"}, ""},
		{"no client certificate", &tfserving.TLS{CAFile: files["ca.pem"], ServerName: "tfserving.test"}, "backend.target"},
		{"wrong server name", &tfserving.TLS{CAFile: files["ca.pem"], CertFile: files["client.pem"], KeyFile: files["client.key"], ServerName: "other.test"}, "backend.target"},
		{"unknown CA", &tfserving.TLS{CertFile: files["client.pem"], KeyFile: files["client.key"], ServerName: "tfserving.test"}, "backend.target"},
		{"plaintext", nil, "backend.target"},
		{"key without certificate", &tfserving.TLS{KeyFile: files["client.key"]}, "backend.tls.cert_file"},
		{"CA file is not PEM", &tfserving.TLS{CAFile: files["client.key"]}, "backend.tls.ca_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rankerConfig(srv.Addr(), p)
			cfg.TLS = tc.tls
			m, err := pool.Open(context.Background(), cfg, true)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer m.Close()
				if _, err := m.Predict(context.Background(), request(t, p, "u", []string{"a", "b"}, 2)); err != nil {
					t.Fatalf("Predict over TLS: %v", err)
				}
				return
			}
			var ve *tfserving.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.wantErr {
				if m != nil {
					m.Close()
				}
				t.Fatalf("Open = %v, want a ValidationError on %s", err, tc.wantErr)
			}
			t.Log(err)
		})
	}
}
