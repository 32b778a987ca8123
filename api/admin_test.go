package api

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"testing"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/store"
)

// Bad requests over the admin socket get an error in the API's shape, and
// ServeAdmin returns, its connections done, when its context ends.
func TestAdminSocketBadRequests(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := auth.NewKeys(context.Background(), db, nil, auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Auth: &Auth{Keys: keys}}, nil, nil, nil, nil, nil)
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeAdmin(ctx, ln) }()

	for _, tc := range []struct {
		name, send, code string
	}{
		{"not JSON", "hello\n", "invalid_json"},
		{"unknown op", `{"op": "drop_tables"}`, "invalid_op"},
		{"create without a key", `{"op": "create_key"}`, "missing_field"},
		{"invalid key", `{"op": "create_key", "key": {"name": "", "scopes": ["admin"]}}`, "invalid_key"},
		{"revoke unknown", `{"op": "revoke_key", "name": "nobody"}`, "key_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			var resp AdminResponse
			if err := json.NewDecoder(conn).Decode(&resp); err != nil {
				t.Fatal(err)
			}
			if resp.Error == nil || resp.Error.Code != tc.code || resp.Error.Message == "" {
				t.Fatalf("answer %+v, want error code %s", resp.Error, tc.code)
			}
		})
	}
	// A connection that sends nothing does not hold the shutdown.
	idle, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeAdmin: %v", err)
	}
}
