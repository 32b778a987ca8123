package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// nginxConfig is a one-worker nginx serving HTTP/2 cleartext on listen and
// passing every gRPC call to backend over kept-alive connections; every
// path it writes is under its prefix directory.
func nginxConfig(listen, backend string) string {
	return fmt.Sprintf(`worker_processes 1;
error_log error.log warn;
pid nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    upstream backend {
        server %s;
        keepalive 32;
    }
    server {
        listen %s http2;
        location / {
            grpc_pass grpc://backend;
        }
    }
}
`, backend, listen)
}

// startNginx runs nginx in the foreground as a child with its own config in
// dir, grpc_pass from listen to backend, and waits until it listens.
func startNginx(ctx context.Context, nginx, dir, listen, backend string) (*child, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxConfig(listen, backend)), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", "nginx.conf", "-g", "daemon off;")
	c, _, err := startChild("nginx", cmd, filepath.Join(dir, "stderr.log"), false)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, c, listen, 10*time.Second); err != nil {
		c.stop()
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return c, nil
}
