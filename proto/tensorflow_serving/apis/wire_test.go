package apis_test

import (
	"encoding/hex"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/util"
)

// TestUpstreamNumbering pins the names and numbers that make these trimmed
// protos interoperate with TensorFlow Serving 2.x, as upstream defines them.
func TestUpstreamNumbering(t *testing.T) {
	fields := []struct {
		msg    proto.Message
		number map[string]protoreflect.FieldNumber
	}{
		{&framework.TensorProto{}, map[string]protoreflect.FieldNumber{
			"dtype": 1, "tensor_shape": 2, "version_number": 3, "tensor_content": 4, "float_val": 5,
			"double_val": 6, "int_val": 7, "string_val": 8, "scomplex_val": 9, "int64_val": 10,
			"bool_val": 11, "dcomplex_val": 12, "half_val": 13, "uint32_val": 16, "uint64_val": 17}},
		{&framework.TensorShapeProto{}, map[string]protoreflect.FieldNumber{"dim": 2, "unknown_rank": 3}},
		{&framework.TensorShapeProto_Dim{}, map[string]protoreflect.FieldNumber{"size": 1, "name": 2}},
		{&tfpb.TensorInfo{}, map[string]protoreflect.FieldNumber{"name": 1, "dtype": 2, "tensor_shape": 3, "coo_sparse": 4}},
		{&tfpb.SignatureDef{}, map[string]protoreflect.FieldNumber{"inputs": 1, "outputs": 2, "method_name": 3}},
		{&apis.ModelSpec{}, map[string]protoreflect.FieldNumber{"name": 1, "version": 2, "signature_name": 3, "version_label": 4}},
		{&apis.PredictRequest{}, map[string]protoreflect.FieldNumber{"model_spec": 1, "inputs": 2, "output_filter": 3}},
		{&apis.PredictResponse{}, map[string]protoreflect.FieldNumber{"outputs": 1, "model_spec": 2}},
		{&apis.SignatureDefMap{}, map[string]protoreflect.FieldNumber{"signature_def": 1}},
		{&apis.GetModelMetadataRequest{}, map[string]protoreflect.FieldNumber{"model_spec": 1, "metadata_field": 2}},
		{&apis.GetModelMetadataResponse{}, map[string]protoreflect.FieldNumber{"model_spec": 1, "metadata": 2}},
		{&apis.GetModelStatusRequest{}, map[string]protoreflect.FieldNumber{"model_spec": 1}},
		{&apis.ModelVersionStatus{}, map[string]protoreflect.FieldNumber{"version": 1, "state": 2, "status": 3}},
		{&apis.GetModelStatusResponse{}, map[string]protoreflect.FieldNumber{"model_version_status": 1}},
		{&util.StatusProto{}, map[string]protoreflect.FieldNumber{"error_code": 1, "error_message": 2}},
	}
	fullNames := map[proto.Message]protoreflect.FullName{
		&framework.TensorProto{}:         "tensorflow.TensorProto",
		&tfpb.SignatureDef{}:             "tensorflow.SignatureDef",
		&apis.PredictRequest{}:           "tensorflow.serving.PredictRequest",
		&apis.SignatureDefMap{}:          "tensorflow.serving.SignatureDefMap",
		&apis.GetModelStatusResponse{}:   "tensorflow.serving.GetModelStatusResponse",
		&util.StatusProto{}:              "tensorflow.serving.StatusProto",
		&apis.GetModelMetadataResponse{}: "tensorflow.serving.GetModelMetadataResponse",
	}
	for _, f := range fields {
		d := f.msg.ProtoReflect().Descriptor()
		for name, num := range f.number {
			fd := d.Fields().ByName(protoreflect.Name(name))
			if fd == nil || fd.Number() != num {
				t.Errorf("%s.%s: want field number %d, got %v", d.FullName(), name, num, fd)
			}
		}
	}
	for m, want := range fullNames {
		if got := m.ProtoReflect().Descriptor().FullName(); got != want {
			t.Errorf("full name %s, want %s", got, want)
		}
	}
	for _, p := range []struct{ got, want string }{
		{apis.PredictionService_Predict_FullMethodName, "/tensorflow.serving.PredictionService/Predict"},
		{apis.PredictionService_GetModelMetadata_FullMethodName, "/tensorflow.serving.PredictionService/GetModelMetadata"},
		{apis.ModelService_GetModelStatus_FullMethodName, "/tensorflow.serving.ModelService/GetModelStatus"},
	} {
		if p.got != p.want {
			t.Errorf("method %s, want %s", p.got, p.want)
		}
	}
	enums := map[string]int32{
		framework.DataType_DT_FLOAT.String(): 1, framework.DataType_DT_DOUBLE.String(): 2,
		framework.DataType_DT_INT32.String(): 3, framework.DataType_DT_STRING.String(): 7,
		framework.DataType_DT_INT64.String(): 9, framework.DataType_DT_BOOL.String(): 10,
		framework.DataType_DT_HALF.String(): 19, framework.DataType_DT_UINT64.String(): 23,
		framework.DataType_DT_UINT2_REF.String():   132,
		apis.ModelVersionStatus_AVAILABLE.String(): 30, apis.ModelVersionStatus_LOADING.String(): 20,
	}
	for name, want := range enums {
		if got := int32(framework.DataType_value[name]) + int32(apis.ModelVersionStatus_State_value[name]); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if name := (&anypb.Any{}).ProtoReflect().Descriptor().FullName(); name != "google.protobuf.Any" {
		t.Errorf("Any is %s", name)
	}
}

// TestGoldenBytes decodes a request written out by hand from the upstream
// field numbers and checks it is the message the gateway builds.
func TestGoldenBytes(t *testing.T) {
	want := &apis.PredictRequest{
		ModelSpec: &apis.ModelSpec{Name: "m", VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(7)}, SignatureName: "s"},
		Inputs: map[string]*framework.TensorProto{"x": {
			Dtype:       framework.DataType_DT_FLOAT,
			TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: 1}}},
			FloatVal:    []float32{1},
		}},
		OutputFilter: []string{"o"},
	}
	golden := "" +
		"0a0a" + "0a016d" + "12020807" + "1a0173" + // model_spec: name "m", version {value 7}, signature_name "s"
		"1213" + "0a0178" + "120e" + // inputs entry: key "x", value: a 14-byte TensorProto
		"0801" + "12041202" + "0801" + "2a040000803f" + // dtype DT_FLOAT, tensor_shape {dim {size 1}}, float_val [1.0]
		"1a016f" // output_filter "o"
	b, err := hex.DecodeString(golden)
	if err != nil {
		t.Fatal(err)
	}
	got := &apis.PredictRequest{}
	if err := proto.Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("decoded %v\nwant    %v", got, want)
	}
	// And the encoding has exactly the golden size (field order aside).
	enc, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != len(b) {
		t.Errorf("encoded %d bytes (%x), golden %d", len(enc), enc, len(b))
	}
}
