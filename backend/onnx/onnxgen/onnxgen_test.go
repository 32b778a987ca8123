package onnxgen

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The same description gives the same bytes (the demo's committed model
// depends on it), and Write lays out a catalogue model directory.
func TestDeterministic(t *testing.T) {
	r := &Recsys{Mode: Catalogue, Users: [][]float32{{1, 2}, {3, 4}}, Items: [][]float32{{0.5, -1}, {2, 0}, {1, 1}},
		ItemIDs: []string{"a", "b", "c"}, Age: true, AgeWeight: 0.5, SurfaceBias: []float32{0.1, 0.2}}
	a, b := r.Graph().Marshal(), r.Graph().Marshal()
	if !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatalf("two marshals differ (%d and %d bytes)", len(a), len(b))
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("model.onnx: %v, equal %v", err, bytes.Equal(got, a))
	}
	ids, err := os.ReadFile(filepath.Join(dir, "items.txt"))
	if err != nil || string(ids) != "a\nb\nc\n" {
		t.Fatalf("items.txt %q, %v", ids, err)
	}
	if got, want := r.Score(1, 0, 2, 1), float64(float32(3*0.5-4)+float32(2*0.5+0.2)); got != want {
		t.Errorf("Score = %v, want %v", got, want)
	}
}
