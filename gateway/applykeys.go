package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

// ApplyKeys applies one API key request (create, list or revoke) where the
// keys of a gateway on dataDir or redisURL live, whether or not that
// gateway runs: with a Redis URL, in Redis, shared with any running
// replica; else, when a gateway runs on the data dir, through its admin
// socket (it holds the data dir's lock, and its key cache learns of the
// change at once); else in the data dir's embedded store. The changes are
// audited under the actor cli, as the admin socket audits them.
//
// An error the request itself met (a key that exists, a name not found) is
// a *client.Error, whichever way the request went; other errors say why
// the store could not be reached. The call ends at ctx's deadline.
func ApplyKeys(ctx context.Context, dataDir, redisURL string, req api.AdminRequest) (*api.AdminResponse, error) {
	if redisURL == "" {
		resp, err := client.Admin(ctx, filepath.Join(dataDir, AdminSocketName), req)
		if !errors.Is(err, client.ErrNoServer) {
			return resp, err
		}
	}
	st, closeStore, err := openKeyStore(ctx, dataDir, redisURL)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	keys, err := auth.NewKeys(ctx, st, nil, auth.KeysOptions{})
	if err != nil {
		return nil, fmt.Errorf("load API keys: %w", err)
	}
	srv := api.New(api.Config{Auth: &api.Auth{Keys: keys}, Audit: audit.New(st, nil)}, nil, nil, nil, nil, nil)
	resp := srv.Admin(ctx, req)
	if resp.Error != nil {
		return &resp, &client.Error{ErrorDetail: *resp.Error}
	}
	return &resp, nil
}

// keyStore is a store that keeps API keys and the audit log.
type keyStore interface {
	auth.Store
	audit.Store
}

// openKeyStore opens the store the keys live in: Redis with a URL, else the
// data dir's embedded store (locked while a server runs on it).
func openKeyStore(ctx context.Context, dataDir, redisURL string) (keyStore, func(), error) {
	if redisURL != "" {
		// Only keys and the audit log are written: the write-ahead log of
		// counters stays empty and is removed with the store.
		wal, err := os.MkdirTemp("", "modelgate-keys-wal-")
		if err != nil {
			return nil, nil, err
		}
		rs, err := redisstore.Open(ctx, redisURL, redisstore.Options{WALDir: wal})
		if err != nil {
			os.RemoveAll(wal)
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		return rs, func() { rs.Close(); os.RemoveAll(wal) }, nil
	}
	db, err := store.Open(dataDir)
	if err != nil {
		if strings.Contains(err.Error(), "another process holds") {
			return nil, nil, fmt.Errorf("%w\n  a server is running on this data dir, but its admin socket %s does not answer; "+
				"manage keys through its HTTP API with an admin key (POST/GET /v1/keys, DELETE /v1/keys/NAME), or stop it",
				err, filepath.Join(dataDir, AdminSocketName))
		}
		return nil, nil, err
	}
	return db, func() { db.Close() }, nil
}
