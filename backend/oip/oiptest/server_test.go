package oiptest_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/backend/oip/oiptest"
	"github.com/modelgate/modelgate/proto/inference"
)

// The fake reads raw_input_contents as a real server does (4-byte
// little-endian lengths before BYTES elements, little-endian numbers), and
// refuses what a real server refuses: contents mixed with raw contents, a
// count or datatype that does not match the metadata.
func TestRawInputContents(t *testing.T) {
	s, err := oiptest.Start(&oiptest.Model{Name: "m",
		Inputs:          []oiptest.Tensor{{Name: "user", Datatype: "INT64", Shape: []int64{-1}}, {Name: "cands", Datatype: "BYTES", Shape: []int64{1, -1}}},
		Outputs:         []oiptest.Tensor{{Name: "scores", Datatype: "FP32", Shape: []int64{1, -1}}},
		CandidatesInput: "cands"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := inference.NewGRPCInferenceServiceClient(cc)
	inputs := func() []*inference.ModelInferRequest_InferInputTensor {
		return []*inference.ModelInferRequest_InferInputTensor{
			{Name: "user", Datatype: "INT64", Shape: []int64{1}},
			{Name: "cands", Datatype: "BYTES", Shape: []int64{1, 2}},
		}
	}
	raw := [][]byte{oiptest.EncodeRaw([]int64{7}), oiptest.EncodeRaw([][]byte{[]byte("a"), []byte("bc")})}
	resp, err := client.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: "m", Inputs: inputs(), RawInputContents: raw})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetOutputs()[0].GetContents().GetFp32Contents()
	if len(got) != 2 || got[0] != float32(oiptest.DefaultScore("1", "a")) || got[1] != float32(oiptest.DefaultScore("1", "bc")) {
		t.Fatalf("scores %v", got)
	}
	s.SetRawOutput(true)
	resp, err = client.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: "m", Inputs: inputs(), RawInputContents: raw})
	if err != nil {
		t.Fatal(err)
	}
	want := oiptest.EncodeRaw([]float32{got[0], got[1]})
	if r := resp.GetRawOutputContents(); len(r) != 1 || string(r[0]) != string(want) || resp.GetOutputs()[0].GetContents() != nil {
		t.Fatalf("raw outputs %v, contents %v", r, resp.GetOutputs()[0].GetContents())
	}

	bad := []struct {
		name string
		req  *inference.ModelInferRequest
	}{
		{"mixed", func() *inference.ModelInferRequest {
			in := inputs()
			in[0].Contents = &inference.InferTensorContents{Int64Contents: []int64{7}}
			return &inference.ModelInferRequest{ModelName: "m", Inputs: in, RawInputContents: raw}
		}()},
		{"cut short", &inference.ModelInferRequest{ModelName: "m", Inputs: inputs(), RawInputContents: [][]byte{raw[0], raw[1][:6]}}},
		{"count", &inference.ModelInferRequest{ModelName: "m", Inputs: inputs(), RawInputContents: [][]byte{raw[0], oiptest.EncodeRaw([][]byte{[]byte("a")})}}},
		{"one raw entry", &inference.ModelInferRequest{ModelName: "m", Inputs: inputs(), RawInputContents: raw[:1]}},
		{"datatype", func() *inference.ModelInferRequest {
			in := inputs()
			in[0].Datatype = "INT32"
			return &inference.ModelInferRequest{ModelName: "m", Inputs: in, RawInputContents: [][]byte{oiptest.EncodeRaw([]int32{7}), raw[1]}}
		}()},
		{"typed in the wrong field", func() *inference.ModelInferRequest {
			in := inputs()
			in[0].Contents = &inference.InferTensorContents{IntContents: []int32{7}}
			in[1].Contents = &inference.InferTensorContents{BytesContents: [][]byte{[]byte("a"), []byte("b")}}
			return &inference.ModelInferRequest{ModelName: "m", Inputs: in}
		}()},
	}
	for _, tc := range bad {
		if _, err := client.ModelInfer(context.Background(), tc.req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", tc.name, err)
		}
	}
}
