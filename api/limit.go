package api

import (
	"context"
	"net/http"

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
