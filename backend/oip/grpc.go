package oip

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/backend/remote"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/inference"
)

// grpcTransport calls inference.GRPCInferenceService over one client
// connection.
type grpcTransport struct {
	cc      *grpc.ClientConn
	client  inference.GRPCInferenceServiceClient
	cfg     *Config
	outputs []*inference.ModelInferRequest_InferRequestedOutputTensor
}

func newGRPCTransport(cfg Config) (*grpcTransport, error) {
	creds, err := remote.TransportCredentials(cfg.TLS)
	if err != nil {
		return nil, err
	}
	// No I/O: the connection is made on first use and kept up by gRPC.
	cc, err := grpc.NewClient(cfg.Target, remote.DialOptions(creds)...)
	if err != nil {
		return nil, invalid("backend.target", "%v", err)
	}
	g := &grpcTransport{cc: cc, client: inference.NewGRPCInferenceServiceClient(cc), cfg: &cfg}
	for _, name := range cfg.outputNames() {
		g.outputs = append(g.outputs, &inference.ModelInferRequest_InferRequestedOutputTensor{Name: name})
	}
	return g, nil
}

func (g *grpcTransport) close() error { return g.cc.Close() }

// grpcError classifies a failed call. ctx is the call's own context.
func grpcError(ctx context.Context, op string, err error) error {
	st := status.Convert(err)
	e := &callError{op: op, msg: st.Code().String() + ": " + st.Message()}
	if k, done := contextFailure(ctx); done {
		e.kind = k
		return e
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		e.kind = failDeadline
	case codes.Unavailable, codes.Canceled:
		// Canceled without our context being done: the connection is
		// closing.
		e.kind = failUnreachable
	case codes.NotFound:
		e.kind = failNotFound
	case codes.ResourceExhausted:
		e.kind = failBusy
	case codes.InvalidArgument:
		e.kind, e.msg = failRejected, st.Message()
	case codes.Unimplemented:
		e.kind = failUnimplemented
	}
	return e
}

func (g *grpcTransport) live(ctx context.Context) error {
	resp, err := g.client.ServerLive(ctx, &inference.ServerLiveRequest{})
	if err != nil {
		return grpcError(ctx, "ServerLive", err)
	}
	if !resp.GetLive() {
		return &callError{op: "ServerLive", kind: failUnreachable, msg: "the server is not live"}
	}
	return nil
}

func (g *grpcTransport) ready(ctx context.Context) (bool, string, error) {
	resp, err := g.client.ModelReady(ctx, &inference.ModelReadyRequest{Name: g.cfg.ModelName, Version: g.cfg.ModelVersion})
	if err != nil {
		return false, "", grpcError(ctx, "ModelReady", err)
	}
	return resp.GetReady(), "ModelReady answered ready = false", nil
}

func (g *grpcTransport) metadata(ctx context.Context) (*modelMetadata, error) {
	resp, err := g.client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: g.cfg.ModelName, Version: g.cfg.ModelVersion})
	if err != nil {
		return nil, grpcError(ctx, "ModelMetadata", err)
	}
	md := &modelMetadata{Name: resp.GetName(), Versions: resp.GetVersions(), Platform: resp.GetPlatform()}
	for _, t := range resp.GetInputs() {
		md.Inputs = append(md.Inputs, tensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	for _, t := range resp.GetOutputs() {
		md.Outputs = append(md.Outputs, tensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	return md, nil
}

func (g *grpcTransport) infer(ctx context.Context, in []featurizer.Tensor) (answer, error) {
	req, err := g.request(in)
	if err != nil {
		return answer{}, err
	}
	traceHeaders(ctx, func(k, v string) { ctx = metadata.AppendToOutgoingContext(ctx, k, v) })
	resp, err := g.client.ModelInfer(ctx, req)
	if err != nil {
		return answer{}, grpcError(ctx, "ModelInfer", err)
	}
	return readGRPCAnswer(resp, &g.cfg.Outputs)
}

// request builds the ModelInferRequest of the inputs, each input's
// elements typed in its contents (see the package documentation).
func (g *grpcTransport) request(in []featurizer.Tensor) (*inference.ModelInferRequest, error) {
	req := &inference.ModelInferRequest{ModelName: g.cfg.ModelName, ModelVersion: g.cfg.ModelVersion,
		Inputs: make([]*inference.ModelInferRequest_InferInputTensor, len(in)), Outputs: g.outputs}
	for i := range in {
		t := &in[i]
		dt, err := checkInput(t)
		if err != nil {
			return nil, err
		}
		c := &inference.InferTensorContents{}
		switch t.DType {
		case featurizer.Float32:
			c.Fp32Contents = t.Float32
		case featurizer.Float64:
			c.Fp64Contents = t.Float64
		case featurizer.Int32:
			c.IntContents = t.Int32
		case featurizer.Int64:
			c.Int64Contents = t.Int64
		case featurizer.Bool:
			c.BoolContents = t.Bool
		case featurizer.String:
			c.BytesContents = make([][]byte, len(t.String))
			for j, s := range t.String {
				c.BytesContents[j] = []byte(s)
			}
		}
		req.Inputs[i] = &inference.ModelInferRequest_InferInputTensor{Name: t.Name, Datatype: dt, Shape: t.Shape, Contents: c}
	}
	return req, nil
}

// readGRPCAnswer reads the mapped outputs of a ModelInferResponse, from
// their contents or, when the response has raw_output_contents, from the
// raw entry of the same index.
func readGRPCAnswer(resp *inference.ModelInferResponse, names *Outputs) (answer, error) {
	outs := resp.GetOutputs()
	raw := resp.GetRawOutputContents()
	if len(raw) > 0 && len(raw) != len(outs) {
		return answer{}, badOutput("%d raw_output_contents for %d outputs", len(raw), len(outs))
	}
	var ans answer
	for i, t := range outs {
		var dst **output
		switch t.GetName() {
		case names.Scores:
			dst = &ans.scores
		case names.IDs:
			dst = &ans.ids
		default:
			continue
		}
		if *dst != nil {
			return answer{}, badOutput("output %q appears twice", t.GetName())
		}
		o := &output{datatype: t.GetDatatype(), shape: t.GetShape()}
		if len(raw) > 0 {
			if err := decodeRaw(o, raw[i]); err != nil {
				return answer{}, badOutput("output %q: raw_output_contents: %v", t.GetName(), err)
			}
		} else {
			typedContents(o, t.GetContents())
		}
		*dst = o
	}
	return ans, nil
}

// typedContents takes an output's elements from the contents field of its
// datatype.
func typedContents(o *output, c *inference.InferTensorContents) {
	switch o.datatype {
	case dtFP32:
		o.f32, o.count = c.GetFp32Contents(), len(c.GetFp32Contents())
	case dtFP64:
		o.f64, o.count = c.GetFp64Contents(), len(c.GetFp64Contents())
	case dtBytes:
		o.strs, o.count = c.GetBytesContents(), len(c.GetBytesContents())
	}
}
