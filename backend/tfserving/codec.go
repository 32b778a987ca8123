package tfserving

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// predictCodec is the gRPC codec of a Model's Predict calls. It encodes a
// *predictRequest and decodes a *predictResponse itself, writing the
// request from the input tensors and reading only the outputs the model
// maps, and hands any other message to gRPC's proto codec. It is safe for
// concurrent use.
//
// Its name is "proto", as the messages are protobuf's; gRPC sends the name
// of a codec forced on a call in the content-type, so Predict calls carry
// application/grpc+proto rather than the default codec's application/grpc,
// which mean the same to gRPC servers.
type predictCodec struct {
	proto encoding.CodecV2
	enc   *requestEncoder
	dec   *responseDecoder
}

func newPredictCodec(enc *requestEncoder, dec *responseDecoder) *predictCodec {
	return &predictCodec{proto: encoding.GetCodecV2(grpcproto.Name), enc: enc, dec: dec}
}

// predictResponse is the reply of a Predict call: the outputs read, or why
// the response could not be read.
type predictResponse struct {
	out outputs
	err error
}

// Marshal encodes a *predictRequest, and any other message with gRPC's
// proto codec. gRPC frees the buffers it returns once it has written them.
func (c *predictCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*predictRequest); ok {
		return c.enc.marshal(r)
	}
	return c.proto.Marshal(v)
}

// Unmarshal decodes a *predictResponse, and any other message with gRPC's
// proto codec.
//
// A response the decoder refuses is recorded in the *predictResponse, not
// returned: gRPC would turn the error into an INTERNAL status of the call,
// while the fault is the server's output.
func (c *predictCodec) Unmarshal(data mem.BufferSlice, v any) error {
	resp, ok := v.(*predictResponse)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	// One buffer, as data usually is, is read in place; the decoder copies
	// what it keeps, as gRPC frees data when Unmarshal returns.
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	resp.err = c.dec.decode(buf.ReadOnlyData(), &resp.out)
	return nil
}

// Name is "proto", the name of gRPC's proto codec.
func (c *predictCodec) Name() string { return grpcproto.Name }
