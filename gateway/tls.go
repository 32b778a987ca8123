package gateway

import (
	"crypto/tls"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/tlsconf"
)

// listenerTLS is the TLS of the listeners: nil when the config has no tls
// section.
type listenerTLS struct {
	rl *tlsconf.Reloader
}

// newListenerTLS reads the certificate files of the tls section.
func newListenerTLS(c config.TLS, log *slog.Logger) (*listenerTLS, error) {
	if !c.Enabled() {
		return nil, nil
	}
	rl, err := tlsconf.New(c.CertFile, c.KeyFile, c.ClientCAFile, log)
	if err != nil {
		return nil, err
	}
	return &listenerTLS{rl: rl}, nil
}

// scheme is the HTTP listener's URL scheme.
func (t *listenerTLS) scheme() string {
	if t == nil {
		return "http"
	}
	return "https"
}

// wrapHTTP makes l serve TLS (HTTP/2 and HTTP/1.1) when configured.
func (t *listenerTLS) wrapHTTP(l net.Listener) net.Listener {
	if t == nil {
		return l
	}
	cfg := t.rl.Config()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return tls.NewListener(l, cfg)
}

// grpcOptions adds the TLS credentials to the gRPC server's options.
func (t *listenerTLS) grpcOptions(opts []grpc.ServerOption) []grpc.ServerOption {
	if t == nil {
		return opts
	}
	return append(append([]grpc.ServerOption(nil), opts...), grpc.Creds(credentials.NewTLS(t.rl.Config())))
}
