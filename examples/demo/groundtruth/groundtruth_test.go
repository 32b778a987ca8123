package groundtruth_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/examples/demo/groundtruth"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/internal/testenv"
)

func load(t *testing.T) *groundtruth.Truth {
	t.Helper()
	tr, err := groundtruth.Load("../truth")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// expectedSuccess is the rate a model would reach if every demo user asked
// it for a top-10 once: the mean over users of P(at least one click).
func expectedSuccess(t *testing.T, tr *groundtruth.Truth, dir string) float64 {
	t.Helper()
	m, err := embedded.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, u := range tr.Users() {
		items, err := m.Predict(context.Background(), &backend.Request{
			Inputs: []featurizer.Tensor{{Name: "user_id", DType: featurizer.String, Shape: []int64{1}, String: []string{u}}},
			K:      10,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = it.ID
		}
		sum += tr.SuccessProb(u, ids)
	}
	return sum / float64(len(tr.Users()))
}

// The demo only works if the bandit has something to find: mf@2 must be
// clearly better than mf@1 under the click model.
func TestDemoModelsDiffer(t *testing.T) {
	tr := load(t)
	mf1 := expectedSuccess(t, tr, "../models/mf/1")
	mf2 := expectedSuccess(t, tr, "../models/mf/2")
	t.Logf("expected success rate of a top-10: mf@1 %.4f, mf@2 %.4f", mf1, mf2)
	if mf1 < 0.10 || mf1 > 0.15 {
		t.Errorf("mf@1 success %.4f, want 0.10–0.15", mf1)
	}
	if mf2 < 0.25 || mf2 > 0.35 {
		t.Errorf("mf@2 success %.4f, want 0.25–0.35", mf2)
	}
	if mf2-mf1 < 0.08 {
		t.Errorf("mf@2 (%.4f) is not clearly better than mf@1 (%.4f)", mf2, mf1)
	}
}

func TestClickProb(t *testing.T) {
	tr := load(t)
	if len(tr.Users()) != 400 || len(tr.Items()) != 1000 || tr.Users()[399] != "u399" || tr.Items()[0] != "i0" {
		t.Fatalf("users %d items %d", len(tr.Users()), len(tr.Items()))
	}
	var sum float64
	var all []float64
	for _, u := range tr.Users() {
		for _, i := range tr.Items() {
			p := tr.ClickProb(u, i)
			if p <= 0 || p >= 1 || math.IsNaN(p) {
				t.Fatalf("ClickProb(%s, %s) = %v", u, i, p)
			}
			sum += p
			all = append(all, p)
		}
	}
	mean := sum / float64(len(all))
	slices.Sort(all)
	t.Logf("click probability: mean %.4f, median %.4f, 99th percentile %.4f", mean, all[len(all)/2], all[len(all)*99/100])
	if mean < 0.005 || mean > 0.02 {
		t.Errorf("mean click probability %.4f, want about 1%%", mean)
	}
	for _, tc := range []struct{ u, i string }{{"nobody", "i0"}, {"u0", "nothing"}} {
		if p := tr.ClickProb(tc.u, tc.i); p != 0 {
			t.Errorf("ClickProb(%q, %q) = %v, want 0", tc.u, tc.i, p)
		}
	}
	if p := tr.SuccessProb("u0", nil); p != 0 {
		t.Errorf("SuccessProb of an empty list = %v", p)
	}
	p0, p1 := tr.ClickProb("u0", "i0"), tr.ClickProb("u0", "i1")
	if got, want := tr.SuccessProb("u0", []string{"i0", "i1"}), 1-(1-p0)*(1-p1); math.Abs(got-want) > 1e-15 {
		t.Errorf("SuccessProb = %v, want %v", got, want)
	}
}

// The best possible top-10 (by true affinity) bounds what any model can
// reach; a random list is the floor. The oracle is exact (0.337); the
// random floor averages 4000 shuffled lists (0.094; one list's success
// probability has standard deviation 0.02, so the mean's is 0.0003), and
// 0.11 is 50 of those above it, for any seed.
func TestOracleAndRandom(t *testing.T) {
	tr := load(t)
	var best, random float64
	r := rand.New(rand.NewPCG(1, 1))
	for _, u := range tr.Users() {
		ids := slices.Clone(tr.Items())
		slices.SortFunc(ids, func(a, b string) int {
			pa, pb := tr.ClickProb(u, a), tr.ClickProb(u, b)
			switch {
			case pa > pb:
				return -1
			case pa < pb:
				return 1
			}
			return 0
		})
		best += tr.SuccessProb(u, ids[:10])
		for range 10 {
			r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
			random += tr.SuccessProb(u, ids[:10]) / 10
		}
	}
	n := float64(len(tr.Users()))
	t.Logf("oracle %.4f, random %.4f", best/n, random/n)
	if best/n < 0.30 || random/n > 0.11 {
		t.Errorf("oracle %.4f, random %.4f", best/n, random/n)
	}
}

// nnSpec is the feature spec of nn@1 in examples/demo/config.yaml.
const nnSpec = `{"inputs": {"user": {"from": "user_id", "transform": "hash_bucket", "buckets": 1000000, "dtype": "int64"}}}`

// The onnx/v1 demo model nn@1 sits between mf@1 and mf@2, clearly better
// than mf@1, so that a bandit has something to find against either.
func TestDemoONNXModel(t *testing.T) {
	p := onnx.LibraryPath("")
	if _, err := os.Stat(p); p == "" || err != nil {
		testenv.SkipOrFail(t, "ONNX Runtime library not found: run `make onnxruntime`")
	}
	tr := load(t)
	plan, err := featurizer.Parse([]byte(nnSpec))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load("../models/nn/1", onnx.Config{Inputs: plan.Inputs(), Outputs: onnx.Outputs{Scores: "scores"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var sum float64
	for _, u := range tr.Users() {
		ins, err := plan.Build(&featurizer.Request{UserID: u})
		if err != nil {
			t.Fatal(err)
		}
		items, err := m.Predict(context.Background(), &backend.Request{Inputs: ins, K: 10})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = it.ID
		}
		sum += tr.SuccessProb(u, ids)
	}
	nn := sum / float64(len(tr.Users()))
	mf1 := expectedSuccess(t, tr, "../models/mf/1")
	mf2 := expectedSuccess(t, tr, "../models/mf/2")
	t.Logf("expected success rate of a top-10: mf@1 %.4f, nn@1 %.4f, mf@2 %.4f", mf1, nn, mf2)
	if nn-mf1 < 0.06 || mf2-nn < 0.02 {
		t.Errorf("nn@1 success %.4f, want at least mf@1 + 0.06 (%.4f) and at most mf@2 - 0.02 (%.4f)", nn, mf1+0.06, mf2-0.02)
	}
}
