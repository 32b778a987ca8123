package gateway

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/internal/redistest"
)

// Without a running server the keys are changed on the store itself: the
// data dir's embedded store, or Redis with a URL. A request's own error is
// a *client.Error, as it is through the admin socket.
func TestApplyKeysOnTheStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) (dataDir, redisURL string)
	}{
		{"embedded", func(t *testing.T) (string, string) { return t.TempDir(), "" }},
		{"redis", func(t *testing.T) (string, string) {
			return t.TempDir(), redistest.Start(t, redistest.Options{}).URL()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, url := tc.store(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			apply := func(req api.AdminRequest) (*api.AdminResponse, error) {
				t.Helper()
				return ApplyKeys(ctx, dir, url, req)
			}
			create := api.AdminRequest{Op: api.AdminCreateKey, Key: &api.KeyRequest{Name: "root", Scopes: []string{"admin"}}}
			resp, err := apply(create)
			if err != nil || resp.Key == nil || resp.Key.Key == "" {
				t.Fatalf("create: %+v, %v; want the new key", resp, err)
			}
			var ce *client.Error
			if _, err := apply(create); !errors.As(err, &ce) {
				t.Fatalf("create again: %v, want a *client.Error", err)
			}
			resp, err = apply(api.AdminRequest{Op: api.AdminListKeys})
			if err != nil || len(resp.Keys) != 1 || resp.Keys[0].Name != "root" || resp.Keys[0].Key != "" {
				t.Fatalf("list: %+v, %v; want root alone, without its key", resp, err)
			}
			if _, err := apply(api.AdminRequest{Op: api.AdminRevokeKey, Name: "root"}); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if _, err := apply(api.AdminRequest{Op: api.AdminRevokeKey, Name: "root"}); !errors.As(err, &ce) {
				t.Fatalf("revoke again: %v, want a *client.Error", err)
			}
		})
	}
}
