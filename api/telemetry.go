package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
)

// armKey is where the recommend handler leaves the arm that served, for
// the request's log line.
const armKey = "modelgate.arm"

// useTelemetry installs, ahead of the other middleware, the tracing
// middleware (only when Config.Telemetry traces: otherwise it would cost
// allocations for spans nobody records) and the debug log line.
func (s *Server) useTelemetry(e *gin.Engine) {
	if t := s.cfg.Telemetry; t.Tracing() {
		e.Use(t.GinMiddleware())
	}
	e.Use(s.accessLog)
}

// metricsRoute serves GET /metrics when the server has telemetry.
func (s *Server) metricsRoute(e *gin.Engine) {
	if t := s.cfg.Telemetry; t != nil {
		e.GET("/metrics", gin.WrapH(t.MetricsHandler()))
	}
}

// accessLog writes one line per request at debug level (nothing at info and
// above): method, path, status, duration, and the endpoint and arm when
// known. The line carries the request's trace_id and span_id when traced.
func (s *Server) accessLog(c *gin.Context) {
	ctx := c.Request.Context()
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	attrs := []slog.Attr{slog.String("method", c.Request.Method), slog.String("path", c.Request.URL.Path),
		slog.Int("status", c.Writer.Status()), slog.Float64("duration_ms", float64(time.Since(start))/float64(time.Millisecond))}
	if ep := c.Param("endpoint"); ep != "" {
		attrs = append(attrs, slog.String("endpoint", ep))
	}
	if arm := c.GetString(armKey); arm != "" {
		attrs = append(attrs, slog.String("arm", arm))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "request", attrs...)
}

// noteArm keeps the arm that served for the log line, only when that line
// is written (setting it allocates).
func (s *Server) noteArm(c *gin.Context, arm string) {
	if s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		c.Set(armKey, arm)
	}
}

// grpcAccessLog is the gRPC counterpart of accessLog, as an interceptor
// installed only when the logger is at debug level when the server is built
// (an interceptor in the chain costs allocations on every call).
func (s *Server) grpcAccessLog() []grpc.UnaryServerInterceptor {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		attrs := []slog.Attr{slog.String("method", info.FullMethod), slog.String("code", status.Code(err).String()),
			slog.Float64("duration_ms", float64(time.Since(start))/float64(time.Millisecond))}
		if r, ok := req.(*pb.RecommendRequest); ok {
			attrs = append(attrs, slog.String("endpoint", r.GetEndpoint()))
		}
		if r, ok := resp.(*pb.RecommendResponse); ok && r != nil {
			attrs = append(attrs, slog.String("arm", r.GetArm()))
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "grpc request", attrs...)
		return resp, err
	}}
}
