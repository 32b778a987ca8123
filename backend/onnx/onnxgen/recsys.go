package onnxgen

import (
	"os"
	"path/filepath"
	"strings"
)

// Mode is what a Recsys model outputs.
type Mode int

// The output modes of the onnx backend.
const (
	// Aligned: input "cands" int64 [B, C]; output "scores" float [B, C].
	Aligned Mode = iota
	// Catalogue: output "scores" float [B, N] over the items, in items.txt order.
	Catalogue
	// IDs: outputs "ids" string [B, K] and "scores" float [B, K], the model's
	// own top K of the catalogue.
	IDs
)

// Recsys describes a small matrix-factorisation scorer:
//
//	score(b, item) = users[user[b]] · items[item] + AgeWeight*age[b] + SurfaceBias[surface[b]]
//
// Inputs: "user" int64 [B]; "cands" int64 [B, C] (Aligned); "age" float [B]
// when Age; "surface" int64 [B] when SurfaceBias is set; "extra" float [B]
// when Extra (an input no spec feeds). Every leading dimension is symbolic.
type Recsys struct {
	Mode        Mode
	Users       [][]float32
	Items       [][]float32
	ItemIDs     []string // Catalogue and IDs: one per row of Items
	Age         bool
	AgeWeight   float32
	SurfaceBias []float32
	K           int // IDs: how many the graph returns
	Extra       bool
}

// Graph builds the ONNX graph.
func (r *Recsys) Graph() *Graph {
	g := &Graph{}
	d := int64(len(r.Users[0]))
	g.Initializers = append(g.Initializers,
		Tensor{Name: "user_table", DType: Float, Dims: []int64{int64(len(r.Users)), d}, Float: flat(r.Users)},
		Tensor{Name: "ax1", DType: Int64, Dims: []int64{1}, Int64: []int64{1}},
	)
	g.Inputs = append(g.Inputs, Value{Name: "user", DType: Int64, Dims: []int64{-1}})
	g.Nodes = append(g.Nodes, Node{Op: "Gather", Inputs: []string{"user_table", "user"}, Outputs: []string{"u"}})
	if r.Mode == Aligned {
		g.Initializers = append(g.Initializers,
			Tensor{Name: "item_table", DType: Float, Dims: []int64{int64(len(r.Items)), d}, Float: flat(r.Items)},
			Tensor{Name: "ax2", DType: Int64, Dims: []int64{1}, Int64: []int64{2}})
		g.Inputs = append(g.Inputs, Value{Name: "cands", DType: Int64, Dims: []int64{-1, -1}})
		zero := int64(0)
		g.Nodes = append(g.Nodes,
			Node{Op: "Gather", Inputs: []string{"item_table", "cands"}, Outputs: []string{"iv"}},
			Node{Op: "Unsqueeze", Inputs: []string{"u", "ax1"}, Outputs: []string{"u3"}},
			Node{Op: "Mul", Inputs: []string{"u3", "iv"}, Outputs: []string{"prod"}},
			Node{Op: "ReduceSum", Inputs: []string{"prod", "ax2"}, Outputs: []string{"dots"},
				Attrs: []Attr{{Name: "keepdims", Int: &zero}}})
	} else {
		// items transposed, [D, N], so that u [B, D] × itemsT = [B, N].
		n := len(r.Items)
		t := make([]float32, 0, n*int(d))
		for j := 0; j < int(d); j++ {
			for i := 0; i < n; i++ {
				t = append(t, r.Items[i][j])
			}
		}
		g.Initializers = append(g.Initializers, Tensor{Name: "items_t", DType: Float, Dims: []int64{d, int64(n)}, Float: t})
		g.Nodes = append(g.Nodes, Node{Op: "MatMul", Inputs: []string{"u", "items_t"}, Outputs: []string{"dots"}})
	}

	var extras []string
	if r.Age {
		g.Inputs = append(g.Inputs, Value{Name: "age", DType: Float, Dims: []int64{-1}})
		g.Initializers = append(g.Initializers, Tensor{Name: "age_w", DType: Float, Dims: nil, Float: []float32{r.AgeWeight}})
		g.Nodes = append(g.Nodes, Node{Op: "Mul", Inputs: []string{"age", "age_w"}, Outputs: []string{"age_term"}})
		extras = append(extras, "age_term")
	}
	if r.SurfaceBias != nil {
		g.Inputs = append(g.Inputs, Value{Name: "surface", DType: Int64, Dims: []int64{-1}})
		g.Initializers = append(g.Initializers, Tensor{Name: "surface_bias", DType: Float, Dims: []int64{int64(len(r.SurfaceBias))}, Float: r.SurfaceBias})
		g.Nodes = append(g.Nodes, Node{Op: "Gather", Inputs: []string{"surface_bias", "surface"}, Outputs: []string{"surface_term"}})
		extras = append(extras, "surface_term")
	}
	if r.Extra {
		g.Inputs = append(g.Inputs, Value{Name: "extra", DType: Float, Dims: []int64{-1}})
		extras = append(extras, "extra")
	}
	scores := "dots"
	if len(extras) > 0 {
		sum := extras[0]
		for i, e := range extras[1:] {
			out := "extra_sum" + string(rune('a'+i))
			g.Nodes = append(g.Nodes, Node{Op: "Add", Inputs: []string{sum, e}, Outputs: []string{out}})
			sum = out
		}
		g.Nodes = append(g.Nodes,
			Node{Op: "Unsqueeze", Inputs: []string{sum, "ax1"}, Outputs: []string{"extra_col"}},
			Node{Op: "Add", Inputs: []string{"dots", "extra_col"}, Outputs: []string{"all_scores"}})
		scores = "all_scores"
	}
	switch r.Mode {
	case Aligned, Catalogue:
		g.Nodes = append(g.Nodes, Node{Op: "Identity", Inputs: []string{scores}, Outputs: []string{"scores"}})
		g.Outputs = append(g.Outputs, Value{Name: "scores", DType: Float, Dims: []int64{-1, -1}})
	case IDs:
		g.Initializers = append(g.Initializers,
			Tensor{Name: "k", DType: Int64, Dims: []int64{1}, Int64: []int64{int64(r.K)}},
			Tensor{Name: "item_ids", DType: String, Dims: []int64{int64(len(r.ItemIDs))}, Strings: r.ItemIDs})
		g.Nodes = append(g.Nodes,
			Node{Op: "TopK", Inputs: []string{scores, "k"}, Outputs: []string{"scores", "top_idx"}},
			Node{Op: "Gather", Inputs: []string{"item_ids", "top_idx"}, Outputs: []string{"ids"}})
		g.Outputs = append(g.Outputs,
			Value{Name: "ids", DType: String, Dims: []int64{-1, int64(r.K)}},
			Value{Name: "scores", DType: Float, Dims: []int64{-1, int64(r.K)}})
	}
	return g
}

// Score is the reference score, computed in float32 as the graph does
// (up to the order of the additions).
func (r *Recsys) Score(user, item int64, age float32, surface int64) float64 {
	var s float32
	for j, v := range r.Users[user] {
		s += v * r.Items[item][j]
	}
	var e float32
	if r.Age {
		e += age * r.AgeWeight
	}
	if r.SurfaceBias != nil {
		e += r.SurfaceBias[surface]
	}
	return float64(s + e)
}

// Write writes model.onnx, and items.txt for Catalogue and IDs, to dir.
func (r *Recsys) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), r.Graph().Marshal(), 0o644); err != nil {
		return err
	}
	if r.Mode == Catalogue {
		return os.WriteFile(filepath.Join(dir, "items.txt"), []byte(strings.Join(r.ItemIDs, "\n")+"\n"), 0o644)
	}
	return nil
}

func flat(m [][]float32) []float32 {
	var out []float32
	for _, row := range m {
		out = append(out, row...)
	}
	return out
}
