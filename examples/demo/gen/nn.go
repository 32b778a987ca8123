package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelgate/modelgate/backend/embedded/npy"
	"github.com/modelgate/modelgate/backend/onnx/onnxgen"
	"github.com/modelgate/modelgate/featurizer"
)

// The onnx/v1 demo model nn@1 (models/nn/1): a small "neural" ranker over
// the whole catalogue. Its feature spec feeds one input,
//
//	user: {from: user_id, transform: hash_bucket, buckets: NNBuckets, dtype: int64}
//
// and the graph maps the bucket to the user's row (Equal against the known
// buckets, ArgMax; an unknown user gets row 0, all zeros), looks up the
// user's vector and scores every item:
//
//	scores [B, N] = tanh(NNScale · user_vec · item_vecsᵀ)
//
// (tanh is monotone, so the ranking is the dot product's). The vectors are
// keep·truth + noise·latentStd·N(0, 1), drawn from their own stream so that
// the mf models keep their bytes.
const (
	// NNBuckets is the hash_bucket size of the spec: no two of the 400
	// demo users share a bucket (checked by generate).
	NNBuckets = 1_000_000
	// NNScale keeps tanh away from saturation.
	NNScale = 0.25
	nnSeed  = 3
)

var nnVersion = version{"1", 1, 0.6}

// nnBuckets is the bucket of each user id, failing on a collision.
func nnBuckets(userIDs []string) ([]int64, error) {
	seen := map[int64]string{}
	out := make([]int64, len(userIDs))
	for i, id := range userIDs {
		b := featurizer.HashBucket(id, NNBuckets)
		if other, ok := seen[b]; ok {
			return nil, fmt.Errorf("nn: users %s and %s share hash bucket %d of %d", other, id, b, NNBuckets)
		}
		seen[b] = id
		out[i] = b
	}
	return out, nil
}

func writeNN(dir string, users, items *npy.Matrix, userIDs, itemIDs []string) error {
	buckets, err := nnBuckets(userIDs)
	if err != nil {
		return err
	}
	g := &gauss{rand.NewPCG(seed1, nnSeed)}
	u, it := g.noisy(users, nnVersion), g.noisy(items, nnVersion)

	// Row 0 is the unknown user: bucket -1 (never produced), zero vector.
	known := append([]int64{-1}, buckets...)
	table := make([]float32, dim, (len(userIDs)+1)*dim)
	table = append(table, u.Data...)
	itemsT := make([]float32, 0, len(it.Data))
	for j := range dim {
		for i := range it.Rows {
			itemsT = append(itemsT, it.Data[i*dim+j])
		}
	}
	one, zero, toFloat := int64(1), int64(0), int64(onnxgen.Float)
	graph := &onnxgen.Graph{
		Inputs: []onnxgen.Value{{Name: "user", DType: onnxgen.Int64, Dims: []int64{-1}}},
		Initializers: []onnxgen.Tensor{
			{Name: "known_buckets", DType: onnxgen.Int64, Dims: []int64{int64(len(known))}, Int64: known},
			{Name: "user_table", DType: onnxgen.Float, Dims: []int64{int64(len(known)), dim}, Float: table},
			{Name: "items_t", DType: onnxgen.Float, Dims: []int64{dim, int64(it.Rows)}, Float: itemsT},
			{Name: "ax1", DType: onnxgen.Int64, Dims: []int64{1}, Int64: []int64{1}},
			{Name: "scale", DType: onnxgen.Float, Float: []float32{NNScale}},
		},
		Nodes: []onnxgen.Node{
			{Op: "Unsqueeze", Inputs: []string{"user", "ax1"}, Outputs: []string{"user_col"}},
			{Op: "Equal", Inputs: []string{"user_col", "known_buckets"}, Outputs: []string{"match"}},
			{Op: "Cast", Inputs: []string{"match"}, Outputs: []string{"match_f"}, Attrs: []onnxgen.Attr{{Name: "to", Int: &toFloat}}},
			{Op: "ArgMax", Inputs: []string{"match_f"}, Outputs: []string{"row"},
				Attrs: []onnxgen.Attr{{Name: "axis", Int: &one}, {Name: "keepdims", Int: &zero}}},
			{Op: "Gather", Inputs: []string{"user_table", "row"}, Outputs: []string{"user_vec"}},
			{Op: "MatMul", Inputs: []string{"user_vec", "items_t"}, Outputs: []string{"dots"}},
			{Op: "Mul", Inputs: []string{"dots", "scale"}, Outputs: []string{"scaled"}},
			{Op: "Tanh", Inputs: []string{"scaled"}, Outputs: []string{"scores"}},
		},
		Outputs: []onnxgen.Value{{Name: "scores", DType: onnxgen.Float, Dims: []int64{-1, int64(it.Rows)}}},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), graph.Marshal(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "items.txt"), []byte(strings.Join(itemIDs, "\n")+"\n"), 0o644)
}
