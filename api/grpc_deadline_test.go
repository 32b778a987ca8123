package api

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/predtoken"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/store"
)

// stuck is a backend that answers only when the call's context ends, and
// tells when a call has arrived.
type stuck struct{ arrived chan struct{} }

func (s stuck) Predict(ctx context.Context, _ *backend.Request) ([]backend.Item, error) {
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestGRPCDeadlineAndCancel checks the code the server itself ends a call
// with (the client library would report its own deadline anyway): a passed
// client deadline is DeadlineExceeded, a cancelled call Canceled, never
// Internal.
func TestGRPCDeadlineAndCancel(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	slow := stuck{arrived: make(chan struct{}, 1)}
	load := func(context.Context, *backendtest.Spec, backend.LoadOptions) (backend.Scorer, error) {
		return slow, nil
	}
	ctx := context.Background()
	reg, err := registry.New(ctx, db, backend.NewDrivers(backendtest.Driver{Name: "embedded", Loader: load}), nil, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A long backend timeout: the client's deadline is what ends the call.
	for _, v := range []string{"1", "2"} {
		if _, _, err := reg.PutVersion(ctx, "m", v, []byte(`{"backend": {"type": "embedded", "path": "x", "timeout_ms": 60000}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := reg.PutEndpoint(ctx, "home", []byte(`{"arms": ["m@1", "m@2"], "fallback": "m@2"}`)); err != nil {
		t.Fatal(err)
	}
	table := &counters.Table{}
	signer, _ := predtoken.NewSigner(bytes.Repeat([]byte{7}, 32))
	rt := router.New(reg, table, signer, nil, router.Options{})
	fb := feedback.NewService(signer, db, table, func(string, string) (float64, bool) { return 0, true }, nil, feedback.Options{})
	s := New(Config{}, reg, rt, fb, table, nil)

	ended := make(chan codes.Code, 1)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		ended <- status.Code(err)
		return resp, err
	}
	gs := grpc.NewServer(append(s.GRPCServerOptions(), grpc.ChainUnaryInterceptor(record))...)
	s.RegisterGRPC(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := pb.NewGatewayClient(conn)

	for _, tc := range []struct {
		name string
		call func() (context.Context, context.CancelFunc)
		end  func(cancel context.CancelFunc) // after the backend has the call
		want codes.Code
	}{
		{"deadline passes", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 200*time.Millisecond)
		}, func(context.CancelFunc) {}, codes.DeadlineExceeded},
		{"client cancels", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(ctx)
		}, func(cancel context.CancelFunc) { cancel() }, codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx, cancel := tc.call()
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := client.Recommend(cctx, &pb.RecommendRequest{Endpoint: "home", UserId: "u1"})
				errc <- err
			}()
			<-slow.arrived
			tc.end(cancel)
			if got := <-ended; got != tc.want {
				t.Fatalf("the server ended the call %s, want %s", got, tc.want)
			}
			if got := status.Code(<-errc); got != tc.want {
				t.Fatalf("the client saw %s, want %s", got, tc.want)
			}
		})
	}
}
