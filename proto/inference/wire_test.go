package inference_test

import (
	"encoding/hex"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/modelgate/modelgate/proto/inference"
)

// TestUpstreamNumbering pins the names and numbers that make this subset
// interoperate with Triton, KServe and MLServer, as KServe's
// grpc_predict_v2.proto defines them.
func TestUpstreamNumbering(t *testing.T) {
	fields := []struct {
		msg    proto.Message
		number map[string]protoreflect.FieldNumber
	}{
		{&inference.ServerLiveResponse{}, map[string]protoreflect.FieldNumber{"live": 1}},
		{&inference.ModelReadyRequest{}, map[string]protoreflect.FieldNumber{"name": 1, "version": 2}},
		{&inference.ModelReadyResponse{}, map[string]protoreflect.FieldNumber{"ready": 1}},
		{&inference.ModelMetadataRequest{}, map[string]protoreflect.FieldNumber{"name": 1, "version": 2}},
		{&inference.ModelMetadataResponse{}, map[string]protoreflect.FieldNumber{"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5}},
		{&inference.ModelMetadataResponse_TensorMetadata{}, map[string]protoreflect.FieldNumber{"name": 1, "datatype": 2, "shape": 3}},
		{&inference.ModelInferRequest{}, map[string]protoreflect.FieldNumber{"model_name": 1, "model_version": 2, "id": 3,
			"parameters": 4, "inputs": 5, "outputs": 6, "raw_input_contents": 7}},
		{&inference.ModelInferRequest_InferInputTensor{}, map[string]protoreflect.FieldNumber{"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5}},
		{&inference.ModelInferRequest_InferRequestedOutputTensor{}, map[string]protoreflect.FieldNumber{"name": 1, "parameters": 2}},
		{&inference.ModelInferResponse{}, map[string]protoreflect.FieldNumber{"model_name": 1, "model_version": 2, "id": 3,
			"parameters": 4, "outputs": 5, "raw_output_contents": 6}},
		{&inference.ModelInferResponse_InferOutputTensor{}, map[string]protoreflect.FieldNumber{"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5}},
		{&inference.InferParameter{}, map[string]protoreflect.FieldNumber{"bool_param": 1, "int64_param": 2, "string_param": 3}},
		{&inference.InferTensorContents{}, map[string]protoreflect.FieldNumber{"bool_contents": 1, "int_contents": 2, "int64_contents": 3,
			"uint_contents": 4, "uint64_contents": 5, "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8}},
	}
	for _, f := range fields {
		d := f.msg.ProtoReflect().Descriptor()
		if d.Fields().Len() != len(f.number) {
			t.Errorf("%s has %d fields, upstream %d", d.FullName(), d.Fields().Len(), len(f.number))
		}
		for name, num := range f.number {
			fd := d.Fields().ByName(protoreflect.Name(name))
			if fd == nil || fd.Number() != num {
				t.Errorf("%s.%s: want field number %d, got %v", d.FullName(), name, num, fd)
			}
		}
	}
	if got := (&inference.ModelInferRequest{}).ProtoReflect().Descriptor().FullName(); got != "inference.ModelInferRequest" {
		t.Errorf("full name %s", got)
	}
	for _, p := range []struct{ got, want string }{
		{inference.GRPCInferenceService_ServerLive_FullMethodName, "/inference.GRPCInferenceService/ServerLive"},
		{inference.GRPCInferenceService_ModelReady_FullMethodName, "/inference.GRPCInferenceService/ModelReady"},
		{inference.GRPCInferenceService_ModelMetadata_FullMethodName, "/inference.GRPCInferenceService/ModelMetadata"},
		{inference.GRPCInferenceService_ModelInfer_FullMethodName, "/inference.GRPCInferenceService/ModelInfer"},
	} {
		if p.got != p.want {
			t.Errorf("method %s, want %s", p.got, p.want)
		}
	}
}

// TestGoldenBytes decodes messages written out by hand from the upstream
// field numbers and checks they are the messages the gateway builds and
// reads.
func TestGoldenBytes(t *testing.T) {
	cases := []struct {
		name   string
		golden string
		want   proto.Message
		into   proto.Message
	}{
		{"request with typed contents",
			"0a016d" + "120131" + // model_name "m", model_version "1"
				"2a14" + "0a0178" + "120446503332" + "1a0101" + // inputs: name "x", datatype "FP32", shape [1],
				"2a0632040000803f" + // contents {fp32_contents [1.0]}
				"3203" + "0a016f", // outputs: name "o"
			&inference.ModelInferRequest{ModelName: "m", ModelVersion: "1",
				Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1},
					Contents: &inference.InferTensorContents{Fp32Contents: []float32{1}}}},
				Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "o"}}},
			&inference.ModelInferRequest{}},
		{"response with raw contents",
			"2a0c" + "0a0173" + "120446503332" + "1a0101" + // outputs: name "s", datatype "FP32", shape [1]
				"32040000803f", // raw_output_contents [1.0 little-endian]
			&inference.ModelInferResponse{
				Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "s", Datatype: "FP32", Shape: []int64{1}}},
				RawOutputContents: [][]byte{{0, 0, 0x80, 0x3f}}},
			&inference.ModelInferResponse{}},
	}
	for _, tc := range cases {
		b, err := hex.DecodeString(tc.golden)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(b, tc.into); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !proto.Equal(tc.into, tc.want) {
			t.Errorf("%s: decoded %v\nwant    %v", tc.name, tc.into, tc.want)
		}
		enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.want)
		if err != nil || hex.EncodeToString(enc) != tc.golden {
			t.Errorf("%s: encoded %x (%v), golden %s", tc.name, enc, err, tc.golden)
		}
	}
}
