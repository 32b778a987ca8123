package api

import (
	"context"
	"fmt"
	"net/http"
	"runtime"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// admit takes an in-flight slot without waiting; false means overloaded.
func (s *Server) admit() bool {
	if s.slots == nil {
		return true
	}
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) release() {
	if s.slots != nil {
		<-s.slots
	}
}

// limit answers 503 overloaded at once past MaxConcurrent in-flight
// requests instead of queueing them. Health and readiness are exempt.
func (s *Server) limit(c *gin.Context) {
	switch c.Request.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		c.Next()
		return
	}
	if !s.admit() {
		c.Header("Retry-After", "1")
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, ErrorBody{Error: ErrorDetail{Code: "overloaded",
			Message: "too many requests in flight; retry shortly"}})
		return
	}
	defer s.release()
	c.Next()
}

// GRPCLimit is the unary interceptor that applies the same in-flight limit
// to gRPC calls.
func (s *Server) GRPCLimit(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !s.admit() {
		return nil, status.Error(codes.Unavailable, "overloaded: too many requests in flight; retry shortly")
	}
	defer s.release()
	return h(ctx, req)
}

// GRPCRecover turns a panic in a handler into a logged Internal error
// instead of a crashed process.
func (s *Server) GRPCRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic serving gRPC call", "method", info.FullMethod, "panic", fmt.Sprint(p))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return h(ctx, req)
}

// flowWindow is the gateway's gRPC server's flow-control window, per
// stream and per connection.
const flowWindow = 1 << 20

// GRPCServerOptions are the options a gRPC server of this API needs: panic
// recovery and the in-flight limit, plus, with Config.Telemetry, tracing
// and, at debug level, a log line per call.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(s.cfg.MaxBodyBytes)),
		// Calls run on a pool of goroutines with grown stacks, one per
		// core, rather than each on a new goroutine that grows its stack
		// again (a busy pool still starts new ones).
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, which pings the client after nearly every request at
		// moderate rates: an extra frame each way, with its writes and
		// wake-ups, for windows these small messages never fill.
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		grpc.ChainUnaryInterceptor(append(s.grpcAccessLog(), s.GRPCRecover, s.GRPCLimit, s.grpcAuth)...),
		grpc.ChainStreamInterceptor(s.grpcAuthStream),
	}, s.cfg.Telemetry.GRPCServerOptions()...)
}
