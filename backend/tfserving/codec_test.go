package tfserving_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// Predict's codec is named as gRPC's proto codec, so TF Serving sees a
// protobuf content-type: application/grpc+proto, as gRPC names a codec
// forced on a call (the default codec's calls say application/grpc).
func TestPredictContentType(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	m := open(t, pool, rankerConfig(srv.Addr(), p), true)
	if _, err := m.Predict(context.Background(), request(t, p, "u", []string{"a", "b"}, 2)); err != nil {
		t.Fatal(err)
	}
	mds := srv.PredictMetadata()
	if got := mds[len(mds)-1].Get("content-type"); !slices.Equal(got, []string{"application/grpc+proto"}) {
		t.Errorf("Predict's content-type = %q, want application/grpc+proto", got)
	}
}

// Concurrent Predicts each get the answer to their own request: a request
// buffer goes back to the pool only once gRPC is done with it, so no call's
// bytes are overwritten by another's while they are sent.
func TestConcurrentPredictsKeepTheirRequests(t *testing.T) {
	srv := startServer(t, ranker())
	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	m := open(t, pool, rankerConfig(srv.Addr(), p), true)
	const workers, calls = 4, 100
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- func() error {
				for i := range calls {
					// Sizes that vary, around and past the pool's buffer sizes.
					cands := make([]string, 1+(w*calls+i)%700*10)
					for j := range cands {
						cands[j] = fmt.Sprintf("w%d-c%d-%d", w, i, j)
					}
					in, err := p.Build(&featurizer.Request{UserID: "u", Candidates: cands})
					if err != nil {
						return err
					}
					items, err := m.Predict(context.Background(), &backend.Request{Inputs: in, Candidates: cands, K: 3})
					if err != nil {
						return err
					}
					want := expected(cands, func(id string) float64 { return float64(float32(tfservingtest.DefaultScore(1, id))) }, nil, 3)
					if !slices.Equal(items, want) {
						return fmt.Errorf("call %d of worker %d: items %v, want %v", i, w, items, want)
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// rawCodec passes *[]byte messages through untouched, so that a server can
// answer with any bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// A response protobuf cannot decode is the server's bad output, not an
// error of the call.
func TestUndecodableResponseIsBadOutput(t *testing.T) {
	good, err := proto.Marshal(&apis.PredictResponse{Outputs: map[string]*framework.TensorProto{"scores": {
		Dtype:       framework.DataType_DT_FLOAT,
		TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: 2}}},
		FloatVal:    []float32{0.25, 0.75}}}})
	if err != nil {
		t.Fatal(err)
	}
	var answer atomic.Pointer[[]byte] // what the server answers Predict
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		method, _ := grpc.MethodFromServerStream(stream)
		if method != "/tensorflow.serving.PredictionService/Predict" || proto.Unmarshal(req, &apis.PredictRequest{}) != nil {
			return errors.New("not a PredictRequest")
		}
		return stream.SendMsg(answer.Load())
	}))
	go gs.Serve(lis)
	defer gs.Stop()

	p := plan(t, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	m := open(t, pool, rankerConfig(lis.Addr().String(), p), false)
	for _, tc := range []struct {
		name  string
		resp  []byte
		class string
	}{
		{"decodable", good, ""},
		{"truncated", good[:len(good)-1], backend.ClassBadOutput},
		// An outputs entry whose key is the byte 0xff.
		{"invalid UTF-8 key", append(slices.Clone(good), 0x0a, 0x03, 0x0a, 0x01, 0xff), backend.ClassBadOutput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer.Store(&tc.resp)
			items, err := m.Predict(context.Background(), request(t, p, "u", []string{"a", "b"}, 2))
			if tc.class == "" {
				if err != nil || len(items) != 2 || items[0].ID != "b" {
					t.Fatalf("Predict = %v, %v; want b then a", items, err)
				}
				return
			}
			if got := tfserving.Classify(err); got != tc.class || !errors.Is(err, backend.ErrBadOutput) {
				t.Fatalf("Predict = %v, %v (class %q); want a bad output", items, err, got)
			}
		})
	}
}
