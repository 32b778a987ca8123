package onnx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/onnx/onnxgen"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/internal/testenv"
)

// needRuntime skips the test when the ONNX Runtime library is not installed,
// except under CI, where it must be.
func needRuntime(t testing.TB) {
	t.Helper()
	p := LibraryPath("")
	if p != "" {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	testenv.SkipOrFail(t, "ONNX Runtime library not found: run `make onnxruntime` (scripts/onnxruntime.sh) or set %s", EnvLibrary)
}

const (
	nUsers   = 50
	nItems   = 200
	dim      = 8
	ageW     = 0.5
	ageMean  = 35
	ageStd   = 12
	specUser = `"user": {"from": "user_id", "transform": "hash_bucket", "buckets": 50, "dtype": "int64"}`
	specAge  = `"age": {"from": "features.age", "transform": "zscore", "mean": 35, "std": 12, "default": 35, "dtype": "float32"}`
	specSurf = `"surface": {"from": "context.surface", "transform": "vocab", "vocab": ["home", "music", "search"], "dtype": "int64"}`
	specCand = `"cands": {"from": "candidates", "transform": "hash_bucket", "buckets": 200, "dtype": "int64"}`
)

var surfaces = []string{"home", "music", "search"}

func newRecsys(mode onnxgen.Mode) *onnxgen.Recsys {
	rng := rand.New(rand.NewPCG(1, 2))
	mat := func(n int) [][]float32 {
		m := make([][]float32, n)
		for i := range m {
			m[i] = make([]float32, dim)
			for j := range m[i] {
				m[i][j] = float32(rng.NormFloat64())
			}
		}
		return m
	}
	r := &onnxgen.Recsys{Mode: mode, Users: mat(nUsers), Items: mat(nItems),
		Age: true, AgeWeight: ageW, SurfaceBias: []float32{0.1, -0.3, 0.7}, K: 20}
	for i := range nItems {
		r.ItemIDs = append(r.ItemIDs, fmt.Sprintf("item-%03d", i))
	}
	return r
}

func writeModel(t *testing.T, r *onnxgen.Recsys) string {
	t.Helper()
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func plan(t *testing.T, inputs ...string) *featurizer.Plan {
	t.Helper()
	p, err := featurizer.Parse([]byte(`{"inputs": {` + strings.Join(inputs, ",") + `}}`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type query struct {
	user       string
	age        float64
	surface    string
	candidates []string
	exclude    []string
	k          int
}

func (q query) request(t *testing.T, p *featurizer.Plan) *backend.Request {
	t.Helper()
	ins, err := p.Build(&featurizer.Request{UserID: q.user, Context: map[string]string{"surface": q.surface},
		Features: map[string]any{"age": q.age}, Candidates: q.candidates})
	if err != nil {
		t.Fatal(err)
	}
	req := &backend.Request{Inputs: ins, Candidates: q.candidates, K: q.k}
	if q.exclude != nil {
		req.Exclude = map[string]struct{}{}
		for _, id := range q.exclude {
			req.Exclude[id] = struct{}{}
		}
	}
	return req
}

// want is the reference answer, computed in Go from the same weights.
func want(r *onnxgen.Recsys, q query) []backend.Item {
	u := featurizer.HashBucket(q.user, nUsers)
	age := float32((q.age - ageMean) / ageStd)
	surf := int64(slices.Index(surfaces, q.surface))
	best := map[string]float64{}
	add := func(id string, s float64) {
		if slices.Contains(q.exclude, id) {
			return
		}
		if old, ok := best[id]; !ok || s > old {
			best[id] = s
		}
	}
	catalogue := func() []backend.Item {
		var all []backend.Item
		for i, id := range r.ItemIDs {
			all = append(all, backend.Item{ID: id, Score: r.Score(u, int64(i), age, surf)})
		}
		return all
	}
	switch r.Mode {
	case onnxgen.Aligned:
		for _, c := range q.candidates {
			add(c, r.Score(u, featurizer.HashBucket(c, nItems), age, surf))
		}
	case onnxgen.Catalogue:
		for _, it := range catalogue() {
			if q.candidates == nil || slices.Contains(q.candidates, it.ID) {
				add(it.ID, it.Score)
			}
		}
	case onnxgen.IDs:
		all := catalogue()
		sortItems(all)
		for _, it := range all[:r.K] {
			if q.candidates == nil || slices.Contains(q.candidates, it.ID) {
				add(it.ID, it.Score)
			}
		}
	}
	var out []backend.Item
	for id, s := range best {
		out = append(out, backend.Item{ID: id, Score: s})
	}
	sortItems(out)
	if len(out) > q.k {
		out = out[:q.k]
	}
	return out
}

func sortItems(items []backend.Item) {
	slices.SortFunc(items, func(a, b backend.Item) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func checkItems(t *testing.T, got, want []backend.Item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d items %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i].ID != want[i].ID || math.Abs(got[i].Score-want[i].Score) > 1e-5 {
			t.Fatalf("item %d: got %+v, want %+v\ngot  %v\nwant %v", i, got[i], want[i], got, want)
		}
	}
}

func candidates(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 7))
	var c []string
	for range n {
		c = append(c, fmt.Sprintf("item-%03d", rng.IntN(nItems+40))) // some not in the catalogue
	}
	return c
}

func load(t *testing.T, dir string, p *featurizer.Plan, cfg Config) *Model {
	t.Helper()
	cfg.Inputs = p.Inputs()
	if cfg.Outputs.Scores == "" {
		cfg.Outputs.Scores = "scores"
	}
	m, err := Load(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// loadMode loads r with the feature spec that feeds the inputs of its mode.
func loadMode(t *testing.T, r *onnxgen.Recsys, cfg Config) (*Model, *featurizer.Plan) {
	t.Helper()
	specs := []string{specUser, specAge, specSurf}
	if r.Mode == onnxgen.Aligned {
		specs = append(specs, specCand)
	}
	p := plan(t, specs...)
	return load(t, writeModel(t, r), p, cfg), p
}

func TestPredictModes(t *testing.T) {
	needRuntime(t)
	queries := []query{
		{user: "alice", age: 30, surface: "home", candidates: candidates(30, 1), k: 10},
		{user: "bob", age: 61, surface: "music", candidates: candidates(5, 2), exclude: []string{"item-001"}, k: 3},
		{user: "carol", age: 18, surface: "search", candidates: candidates(50, 3), k: 100},
		{user: "dave", age: 35, surface: "home", k: 7, exclude: []string{"item-010", "item-020"}},
	}
	for _, tc := range []struct {
		name string
		mode onnxgen.Mode
		out  Outputs
	}{
		{"aligned", onnxgen.Aligned, Outputs{Scores: "scores"}},
		{"catalogue", onnxgen.Catalogue, Outputs{Scores: "scores"}},
		{"ids", onnxgen.IDs, Outputs{IDs: "ids", Scores: "scores"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecsys(tc.mode)
			m, p := loadMode(t, r, Config{Outputs: tc.out})
			for i, q := range queries {
				if tc.mode == onnxgen.Aligned && q.candidates == nil {
					_, err := m.Predict(context.Background(), q.request(t, plan(t, specUser, specAge, specSurf,
						`"cands": {"from": "candidates", "transform": "hash_bucket", "buckets": 200, "dtype": "int64", "default": ["x"]}`)))
					if !errors.Is(err, ErrBadInput) {
						t.Fatalf("aligned model, no candidates: got %v, want ErrBadInput", err)
					}
					continue
				}
				got, err := m.Predict(context.Background(), q.request(t, p))
				if err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				checkItems(t, got, want(r, q))
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	needRuntime(t)
	aligned := writeModel(t, newRecsys(onnxgen.Aligned))
	extra := newRecsys(onnxgen.Aligned)
	extra.Extra = true
	extraDir := writeModel(t, extra)
	corrupt := t.TempDir()
	os.WriteFile(filepath.Join(corrupt, ModelFile), []byte("this is not a protobuf\x00\xff"), 0o644)
	catalogue := writeModel(t, newRecsys(onnxgen.Catalogue))
	short := writeModel(t, newRecsys(onnxgen.Catalogue))
	os.WriteFile(filepath.Join(short, ItemIDsFile), []byte("a\nb\n"), 0o644)

	all := []string{specUser, specAge, specSurf, specCand}
	for _, tc := range []struct {
		name, dir string
		inputs    []string
		out       Outputs
		batching  *Batching
		field     string
		msg       string
	}{
		{"no model file", t.TempDir(), all, Outputs{Scores: "scores"}, nil, "backend.path", "model.onnx"},
		{"corrupt", corrupt, all, Outputs{Scores: "scores"}, nil, "backend.path", "not a model"},
		{"spec input not in graph", aligned, append(slices.Clone(all), `"country": {"from": "features.country", "dtype": "string"}`),
			Outputs{Scores: "scores"}, nil, "features.inputs.country", `no input "country"`},
		{"graph input not fed", extraDir, all, Outputs{Scores: "scores"}, nil, "features.inputs.extra", "not fed"},
		{"wrong dtype", aligned, []string{specUser, specSurf, specCand,
			`"age": {"from": "features.age", "transform": "zscore", "mean": 35, "std": 12, "dtype": "float64"}`},
			Outputs{Scores: "scores"}, nil, "features.inputs.age", "dtype float64"},
		{"wrong rank", aligned, []string{specUser, specAge, specSurf,
			`"cands": {"from": "context.c", "transform": "hash_bucket", "buckets": 200, "dtype": "int64"}`},
			Outputs{Scores: "scores"}, nil, "features.inputs.cands", "shape"},
		{"missing output", aligned, all, Outputs{Scores: "probabilities"}, nil, "backend.outputs.scores", `no output "probabilities"`},
		{"no scores role", aligned, all, Outputs{}, nil, "backend.outputs.scores", "required"},
		{"ids not strings", aligned, all, Outputs{IDs: "scores", Scores: "scores"}, nil, "backend.outputs.ids", "want a"},
		{"bad batching", aligned, all, Outputs{Scores: "scores"}, &Batching{}, "backend.batching.max_batch_size", "at least 1"},
		{"catalogue size", short, []string{specUser, specAge, specSurf}, Outputs{Scores: "scores"}, nil, "backend.outputs.scores", "items.txt has 2 items"},
		{"catalogue ok", catalogue, []string{specUser, specAge, specSurf}, Outputs{Scores: "scores"}, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(tc.dir, Config{Inputs: plan(t, tc.inputs...).Inputs(), Outputs: tc.out, Batching: tc.batching})
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v (%T), want a *ValidationError", err, err)
			}
			if ve.Field != tc.field || !strings.Contains(ve.Msg, tc.msg) {
				t.Fatalf("got %q / %q, want field %q and a message with %q", ve.Field, ve.Msg, tc.field, tc.msg)
			}
		})
	}
}

// TestRuntimeMissing needs no library: the path is checked before loading.
func TestRuntimeMissing(t *testing.T) {
	dir := t.TempDir()
	if err := newRecsys(onnxgen.Aligned).Write(dir); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, Config{LibraryPath: filepath.Join(t.TempDir(), "libonnxruntime.so.1"), Outputs: Outputs{Scores: "scores"}})
	if !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("got %v, want ErrRuntimeMissing", err)
	}
	for _, s := range []string{"make onnxruntime", EnvLibrary} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	t.Setenv(EnvLibrary, "/nonexistent/libonnxruntime.so.1")
	if _, err := Load(dir, Config{Outputs: Outputs{Scores: "scores"}}); !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("with %s unset path: got %v, want ErrRuntimeMissing", EnvLibrary, err)
	}
}

func TestBatching(t *testing.T) {
	needRuntime(t)
	r := newRecsys(onnxgen.Aligned)
	p := plan(t, specUser, specAge, specSurf, specCand)
	m := load(t, writeModel(t, r), p, Config{Batching: &Batching{MaxBatchSize: 16, BatchTimeout: 5 * time.Millisecond}})
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	qs := make([]query, n)
	reqs := make([]*backend.Request, n)
	for i := range n {
		qs[i] = query{user: fmt.Sprintf("user-%d", i), age: float64(20 + i), surface: surfaces[i%3],
			candidates: candidates(10+i%3, uint64(i)), k: 5} // three candidate lengths: three shapes
		reqs[i] = qs[i].request(t, p)
	}
	for i := range n {
		wg.Go(func() {
			q := qs[i]
			got, err := m.Predict(context.Background(), reqs[i])
			if err != nil {
				errs <- err
				return
			}
			w := want(r, q)
			if len(got) != len(w) {
				errs <- fmt.Errorf("request %d: got %v, want %v", i, got, w)
				return
			}
			for j := range got {
				if got[j].ID != w[j].ID || math.Abs(got[j].Score-w[j].Score) > 1e-5 {
					errs <- fmt.Errorf("request %d: got %v, want %v", i, got, w)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if runs := m.runs.Load(); runs >= n {
		t.Errorf("%d runs for %d concurrent requests: nothing was batched", runs, n)
	} else {
		t.Logf("%d requests in %d runs", n, runs)
	}
}

func TestBatchingDeadline(t *testing.T) {
	needRuntime(t)
	r := newRecsys(onnxgen.Aligned)
	p := plan(t, specUser, specAge, specSurf, specCand)
	m := load(t, writeModel(t, r), p, Config{Batching: &Batching{MaxBatchSize: 64, BatchTimeout: 2 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.Predict(ctx, query{user: "u", surface: "home", candidates: candidates(4, 1), k: 2}.request(t, p))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("returned after %v, past its deadline", d)
	}
}

func TestClosed(t *testing.T) {
	needRuntime(t)
	p := plan(t, specUser, specAge, specSurf, specCand)
	m := load(t, writeModel(t, newRecsys(onnxgen.Aligned)), p, Config{})
	m.Close()
	m.Close()
	_, err := m.Predict(context.Background(), query{user: "u", surface: "home", candidates: []string{"a"}, k: 1}.request(t, p))
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

// TestBadOutput: an aligned model whose scores do not match the request's
// candidates (its "cands" input read something else) is the backend's
// fault, not the request's.
func TestBadOutput(t *testing.T) {
	needRuntime(t)
	p := plan(t, specUser, specAge, specSurf,
		`"cands": {"from": "features.recent", "transform": "hash_bucket", "buckets": 200, "length": 3, "dtype": "int64"}`)
	m := load(t, writeModel(t, newRecsys(onnxgen.Aligned)), p, Config{})
	ins, err := p.Build(&featurizer.Request{UserID: "u", Context: map[string]string{"surface": "home"},
		Features: map[string]any{"age": 40.0, "recent": []any{"a", "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Predict(context.Background(), &backend.Request{Inputs: ins, Candidates: []string{"a", "b", "c", "d", "e"}, K: 2})
	if !errors.Is(err, backend.ErrBadOutput) || backend.Classify(err) != backend.ClassBadOutput {
		t.Fatalf("got %v, want ErrBadOutput", err)
	}
	// A missing input is the request's fault.
	_, err = m.Predict(context.Background(), &backend.Request{Inputs: ins[:1], Candidates: []string{"a"}, K: 2})
	if !errors.Is(err, ErrBadInput) {
		t.Fatalf("got %v, want ErrBadInput", err)
	}
}

// A run that fails fails only its own batch: requests of another shape in
// flight at the same time still get their rows.
func TestFailingBatchIsolated(t *testing.T) {
	needRuntime(t)
	r := newRecsys(onnxgen.Aligned)
	p := plan(t, specUser, specAge, specSurf, specCand)
	m := load(t, writeModel(t, r), p, Config{Batching: &Batching{MaxBatchSize: 16, BatchTimeout: 20 * time.Millisecond}})
	type result struct {
		bad bool
		err error
	}
	const good, bad = 8, 4
	out := make(chan result, good+bad)
	var wg sync.WaitGroup
	for i := range good + bad {
		isBad := i >= good
		q := query{user: fmt.Sprintf("user-%d", i), age: 30, surface: "music", candidates: candidates(10, uint64(i)), k: 5}
		if isBad {
			q.candidates = candidates(13, uint64(i)) // another shape: another batch
		}
		req := q.request(t, p)
		if isBad {
			for j := range req.Inputs {
				if req.Inputs[j].Name == "surface" {
					req.Inputs[j].Int64[0] = 99 // out of the bias table: the run fails
				}
			}
		}
		wg.Go(func() {
			got, err := m.Predict(context.Background(), req)
			if err == nil && !isBad {
				w := want(r, q)
				if len(got) != len(w) || got[0].ID != w[0].ID {
					err = fmt.Errorf("got %v, want %v", got, w)
				}
			}
			out <- result{bad: isBad, err: err}
		})
	}
	wg.Wait()
	close(out)
	for res := range out {
		switch {
		case res.bad && res.err == nil:
			t.Error("a request of the failing batch succeeded")
		case !res.bad && res.err != nil:
			t.Errorf("a request of another batch failed: %v", res.err)
		}
	}
}
