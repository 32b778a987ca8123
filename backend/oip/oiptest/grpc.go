package oiptest

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/proto/inference"
)

// service is the gRPC face of the server.
type service struct {
	inference.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g service) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	g.s.begin("ServerLive", "")
	return &inference.ServerLiveResponse{Live: true}, nil
}

func (g service) ModelReady(_ context.Context, req *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	return &inference.ModelReadyResponse{Ready: g.s.ready(req.GetName(), req.GetVersion())}, nil
}

func (g service) ModelMetadata(_ context.Context, req *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	return g.s.metadata(req.GetName(), req.GetVersion())
}

func (g service) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	r := Request{Protocol: "grpc", Infer: req, Header: incoming(ctx)}
	in, err := grpcInputs(req)
	if err != nil {
		g.s.record(r)
		g.s.begin("ModelInfer", req.GetModelName())
		return nil, err
	}
	var wanted []string
	for _, o := range req.GetOutputs() {
		wanted = append(wanted, o.GetName())
	}
	m, out, bad, raw, err := g.s.infer(ctx, r, in, wanted)
	if err != nil {
		return nil, err
	}
	out = spoil(filter(out, wanted), m.scoresName(), bad)
	resp := &inference.ModelInferResponse{ModelName: m.Name, ModelVersion: req.GetModelVersion(), Id: req.GetId()}
	for _, t := range out {
		o := &inference.ModelInferResponse_InferOutputTensor{Name: t.name, Datatype: t.datatype, Shape: t.shape}
		if raw {
			b := encodeRaw(&t)
			if bad == Malformed && t.name == m.scoresName() && len(b) > 0 {
				b = b[:len(b)-1]
			}
			resp.RawOutputContents = append(resp.RawOutputContents, b)
		} else {
			o.Contents = &inference.InferTensorContents{Fp32Contents: t.f32, Fp64Contents: t.f64, Int64Contents: t.i64,
				IntContents: t.i32, BoolContents: t.b, BytesContents: t.bytes}
		}
		resp.Outputs = append(resp.Outputs, o)
	}
	return resp, nil
}

// grpcInputs reads a request's inputs from their typed contents or from
// raw_input_contents, which may not be mixed.
func grpcInputs(req *inference.ModelInferRequest) ([]tensor, error) {
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, errorf(codes.InvalidArgument, "expected %d raw_input_contents, got %d", len(req.GetInputs()), len(raw))
	}
	in := make([]tensor, len(req.GetInputs()))
	for i, t := range req.GetInputs() {
		in[i] = tensor{name: t.GetName(), datatype: t.GetDatatype(), shape: t.GetShape()}
		if len(raw) > 0 {
			if t.GetContents() != nil {
				return nil, errorf(codes.InvalidArgument, "contents field must not be specified when using raw_input_contents for '%s'", t.GetName())
			}
			if err := decodeRaw(&in[i], raw[i]); err != nil {
				return nil, errorf(codes.InvalidArgument, "input '%s': %v", t.GetName(), err)
			}
			continue
		}
		c := t.GetContents()
		var n int
		switch t.GetDatatype() {
		case "BOOL":
			in[i].b, n = c.GetBoolContents(), len(c.GetBoolContents())
		case "INT32":
			in[i].i32, n = c.GetIntContents(), len(c.GetIntContents())
		case "INT64":
			in[i].i64, n = c.GetInt64Contents(), len(c.GetInt64Contents())
		case "FP32":
			in[i].f32, n = c.GetFp32Contents(), len(c.GetFp32Contents())
		case "FP64":
			in[i].f64, n = c.GetFp64Contents(), len(c.GetFp64Contents())
		case "BYTES":
			in[i].bytes, n = c.GetBytesContents(), len(c.GetBytesContents())
		default:
			return nil, errorf(codes.InvalidArgument, "input '%s': datatype %s is not supported by this server", t.GetName(), t.GetDatatype())
		}
		// Contents of another datatype's field are an error, as they are
		// for a real server.
		all := len(c.GetBoolContents()) + len(c.GetIntContents()) + len(c.GetInt64Contents()) + len(c.GetFp32Contents()) +
			len(c.GetFp64Contents()) + len(c.GetBytesContents()) + len(c.GetUintContents()) + len(c.GetUint64Contents())
		if all != n {
			return nil, errorf(codes.InvalidArgument, "input '%s': contents in a field other than %s's", t.GetName(), t.GetDatatype())
		}
	}
	return in, nil
}
