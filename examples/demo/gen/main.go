// Command gen writes the bundled demo's data: the ground truth of the
// simulated world (examples/demo/truth) and two embedding/v1 models of it,
// a poor one (models/mf/1) and a good one (models/mf/2), and an onnx/v1
// ranker in between (models/nn/1, see nn.go). See
// examples/demo/README.md and package groundtruth for the click model.
//
// Usage, from the repository root:
//
//	go run ./examples/demo/gen [-out examples/demo]
//
// The output is a pure function of the constants below: the same bytes on
// every machine and Go version. It uses only math/rand/v2's PCG, whose
// output is specified, and normal-ish numbers built from sums of uniforms
// with explicitly rounded arithmetic (no math.Log or math.Exp, whose last
// bit may differ between architectures, and no fused multiply-adds).
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelgate/modelgate/backend/embedded/npy"
)

const (
	numUsers = 400
	numItems = 1000
	dim      = 16
	// latentStd is the standard deviation of each true vector component:
	// with 16 dimensions a random user-item affinity has variance
	// 16·0.5⁴ = 1.
	latentStd = 0.5
	seed1     = 2026
	seed2     = 11
)

// version describes one demo model: each of its vectors is
// keep·truth + noise·latentStd·N(0, 1) (independent noise per component).
type version struct {
	name        string
	keep, noise float64
}

var versions = []version{
	// mf@1, the poor model: a faint echo of the truth under much noise.
	{"1", 0.4, 1},
	// mf@2, the good model: the truth with a little noise.
	{"2", 1, 0.35},
}

func main() {
	out := flag.String("out", "examples/demo", "directory to write truth/ and models/ into")
	flag.Parse()
	if err := generate(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// generate writes every demo file under out.
func generate(out string) error {
	g := &gauss{rand.NewPCG(seed1, seed2)}
	users := g.matrix(numUsers, latentStd)
	items := g.matrix(numItems, latentStd)
	userIDs, itemIDs := ids("u", numUsers), ids("i", numItems)

	if err := writeTable(filepath.Join(out, "truth"), users, items, userIDs, itemIDs); err != nil {
		return err
	}
	for _, v := range versions {
		dir := filepath.Join(out, "models", "mf", v.name)
		if err := writeTable(dir, g.noisy(users, v), g.noisy(items, v), userIDs, itemIDs); err != nil {
			return err
		}
		config := `{"format": "embedding/v1", "scoring": "dot"}` + "\n"
		if err := os.WriteFile(filepath.Join(dir, "model.json"), []byte(config), 0o644); err != nil {
			return err
		}
	}
	return writeNN(filepath.Join(out, "models", "nn", "1"), users, items, userIDs, itemIDs)
}

func writeTable(dir string, users, items *npy.Matrix, userIDs, itemIDs []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, m := range map[string]*npy.Matrix{"users.npy": users, "items.npy": items} {
		if err := npy.WriteFile(filepath.Join(dir, name), m); err != nil {
			return err
		}
	}
	for name, list := range map[string][]string{"users.txt": userIDs, "items.txt": itemIDs} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// gauss draws approximately standard normal numbers as the sum of twelve
// uniforms minus six (Irwin–Hall): mean 0, variance 1, tails cut at ±6,
// which is all latent vectors need, and exactly reproducible.
type gauss struct{ src *rand.PCG }

func (g *gauss) next() float64 {
	var s float64
	for range 12 {
		s += float64(g.src.Uint64()>>11) / (1 << 53) // exact: 53-bit uniform
	}
	return s - 6
}

func (g *gauss) matrix(rows int, std float64) *npy.Matrix {
	m := &npy.Matrix{Rows: rows, Cols: dim, Data: make([]float32, rows*dim)}
	for i := range m.Data {
		m.Data[i] = float32(std * g.next())
	}
	return m
}

// noisy returns keep·m + noise·latentStd·N(0, 1), element-wise.
func (g *gauss) noisy(m *npy.Matrix, v version) *npy.Matrix {
	out := &npy.Matrix{Rows: m.Rows, Cols: m.Cols, Data: make([]float32, len(m.Data))}
	for i, x := range m.Data {
		// The conversions round each product, so that no platform fuses
		// them into a multiply-add with a different last bit.
		signal := float64(v.keep * float64(x))
		noise := float64(v.noise * latentStd * g.next())
		out.Data[i] = float32(signal + noise)
	}
	return out
}
