package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/modelgate/modelgate/api"
)

// ErrNoServer is an admin socket that no server answers: there is none, or
// a stale one left by a server that was killed. Calls return it wrapped.
var ErrNoServer = errors.New("no server listens on the admin socket")

// Admin sends one request to the admin socket of a server running on a
// data dir (the Unix socket DIR/admin.sock, reachable by the data dir's
// owner only), where the command line manages API keys without a key of
// its own. The socket speaks one JSON api.AdminRequest and one
// api.AdminResponse per connection, not HTTP.
//
// An answer with an error is returned with that error as a *Error of
// Status 0 (the socket has no HTTP status). When nothing answers on path
// the error wraps ErrNoServer. The call ends at ctx's deadline.
func Admin(ctx context.Context, path string, req api.AdminRequest) (*api.AdminResponse, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoServer, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return nil, fmt.Errorf("the server's admin socket: %w", err)
	}
	var resp api.AdminResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("the server's admin socket: no answer: %w", err)
	}
	if resp.Error != nil {
		return &resp, &Error{ErrorDetail: *resp.Error}
	}
	return &resp, nil
}
