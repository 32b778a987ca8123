package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
	"github.com/modelgate/modelgate/topk"
)

// The model every path calls: the backend serves it, the gateway's one arm
// and the bare proxy both ask for it.
const (
	modelName    = "ranker"
	modelVersion = 1
	userBuckets  = 10000
)

// recommendRequest is the JSON body the bare proxy and the gateway's HTTP
// recommend both accept (the subset of it the run sends).
type recommendRequest struct {
	UserID     string   `json:"user_id"`
	Candidates []string `json:"candidates"`
	K          int      `json:"k"`
}

type item struct {
	ID    string  `json:"id"`
	Score float64 `json:"score"`
}

type recommendResponse struct {
	Items []item `json:"items"`
}

// predictor is the one call the proxy makes.
type predictor interface {
	Predict(ctx context.Context, in *apis.PredictRequest, opts ...grpc.CallOption) (*apis.PredictResponse, error)
}

// predictRequest builds the PredictRequest the gateway builds for the same
// body with the run's feature spec: "user", the user id's hash bucket as an
// int64 tensor of shape [1], and "cands", the candidates as a string tensor
// of shape [1, N]; only the "scores" output.
func predictRequest(r *recommendRequest) *apis.PredictRequest {
	cands := make([][]byte, len(r.Candidates))
	for i, c := range r.Candidates {
		cands[i] = []byte(c)
	}
	user := binary.LittleEndian.AppendUint64(nil, uint64(featurizer.HashBucket(r.UserID, userBuckets)))
	return &apis.PredictRequest{
		ModelSpec: &apis.ModelSpec{Name: modelName, SignatureName: "serving_default",
			VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(modelVersion)}},
		Inputs: map[string]*framework.TensorProto{
			"user": {Dtype: framework.DataType_DT_INT64, TensorContent: user,
				TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: 1}}}},
			"cands": {Dtype: framework.DataType_DT_STRING, StringVal: cands,
				TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: 1}, {Size: int64(len(cands))}}}},
		},
		OutputFilter: []string{"scores"},
	}
}

// proxy is the baseline: a bare Go HTTP-JSON→Predict proxy (encoding/json,
// one gRPC connection, no featurizer, no bandit, no logging).
type proxy struct {
	backend predictor
	timeout time.Duration
}

func (p proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var req recommendRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	if topk.Check(req.K, false) != nil || len(req.Candidates) == 0 || len(req.Candidates) > 10000 {
		http.Error(w, fmt.Sprintf("want %d <= k <= %d and 1 to 10000 candidates", topk.Min, topk.Max), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	resp, err := p.backend.Predict(ctx, predictRequest(&req))
	if err != nil {
		http.Error(w, "predict: "+err.Error(), http.StatusBadGateway)
		return
	}
	items, err := topK(resp, req.Candidates, req.K)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(recommendResponse{Items: items})
}

// topK ranks the candidates by the response's scores (one per candidate,
// in order), best first, ties by id, and keeps k.
func topK(resp *apis.PredictResponse, cands []string, k int) ([]item, error) {
	t := resp.GetOutputs()["scores"]
	if t == nil || t.GetDtype() != framework.DataType_DT_FLOAT || len(t.GetFloatVal()) != len(cands) {
		return nil, errors.New("predict: want a DT_FLOAT scores output with one float_val per candidate")
	}
	items := make([]item, len(cands))
	for i, c := range cands {
		items[i] = item{ID: c, Score: float64(t.GetFloatVal()[i])}
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return items[:min(k, len(items))], nil
}
