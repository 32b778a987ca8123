package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/fault"
)

// Operations of an AdminRequest.
const (
	AdminCreateKey = "create_key"
	AdminListKeys  = "list_keys"
	AdminRevokeKey = "revoke_key"
)

// AdminActor is the audit log's actor of the changes that come through the
// admin socket: the command line.
const AdminActor = "cli"

// AdminRequest is one request over the admin socket: one JSON object per
// connection, answered by one AdminResponse.
type AdminRequest struct {
	Op   string      `json:"op"`             // AdminCreateKey, AdminListKeys or AdminRevokeKey
	Key  *KeyRequest `json:"key,omitempty"`  // the key to create
	Name string      `json:"name,omitempty"` // the key to revoke
}

// AdminResponse answers an AdminRequest: the created key (with the key
// itself, shown once), the keys, or the error in the API's shape.
type AdminResponse struct {
	Key   *KeyView     `json:"key,omitempty"`
	Keys  []KeyView    `json:"keys,omitempty"`
	Error *ErrorDetail `json:"error,omitempty"`
}

// Bounds of the admin socket.
const (
	adminMaxRequest = 64 << 10
	adminTimeout    = 30 * time.Second
	adminMaxConns   = 8
)

// ServeAdmin answers AdminRequests on ln (a Unix socket in the data dir,
// reachable only by its owner) until ctx ends, applying them through the
// same calls as the HTTP API with the actor AdminActor. It closes ln when
// ctx ends and returns once every connection is done.
func (s *Server) ServeAdmin(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, adminMaxConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			conn.Close()
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.adminConn(ctx, conn)
		}()
	}
}

func (s *Server) adminConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(adminTimeout))
	var req AdminRequest
	var resp AdminResponse
	if err := json.NewDecoder(io.LimitReader(conn, adminMaxRequest)).Decode(&req); err != nil {
		resp.Error = &ErrorDetail{Code: "invalid_json", Message: "the request is not one JSON AdminRequest: " + err.Error()}
	} else {
		rctx, cancel := context.WithTimeout(ctx, adminTimeout)
		resp = s.Admin(rctx, req)
		cancel()
	}
	_ = json.NewEncoder(conn).Encode(&resp)
}

// Admin applies one AdminRequest through the same calls as the HTTP API,
// with the actor AdminActor in the audit log: what the admin socket
// serves, and what the command line does itself when no server runs.
func (s *Server) Admin(ctx context.Context, req AdminRequest) AdminResponse {
	var resp AdminResponse
	if err := s.admin(audit.WithActor(ctx, AdminActor), &req, &resp); err != nil {
		_, d := classify(err)
		if fault.As(err) == nil {
			s.log.Error("admin request", "op", req.Op, "err", err)
		}
		resp.Error = &d
	}
	return resp
}

func (s *Server) admin(ctx context.Context, req *AdminRequest, resp *AdminResponse) error {
	switch req.Op {
	case AdminCreateKey:
		if req.Key == nil {
			return fault.Field("key", "missing_field", "required")
		}
		v, err := s.CreateKey(ctx, *req.Key)
		if err != nil {
			return err
		}
		resp.Key = &v
	case AdminListKeys:
		keys, err := s.ListKeys(ctx)
		if err != nil {
			return err
		}
		resp.Keys = keys
	case AdminRevokeKey:
		return s.RevokeKey(ctx, req.Name)
	default:
		return fault.Field("op", "invalid_op", "must be one of %s, %s, %s", AdminCreateKey, AdminListKeys, AdminRevokeKey)
	}
	return nil
}
