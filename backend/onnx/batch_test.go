package onnx

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/onnx/onnxgen"
	"github.com/modelgate/modelgate/featurizer"
)

// PredictBatch must return, for every request, exactly what Predict returns
// for it alone, from one session run.
func TestPredictBatchMatchesPredict(t *testing.T) {
	needRuntime(t)
	cands := candidates(12, 7)
	queries := []query{
		{user: "alice", age: 30, surface: "home", candidates: cands, k: 10},
		{user: "bob", age: 61, surface: "music", candidates: candidates(12, 2), exclude: []string{"item-001", cands[0]}, k: 3},
		{user: "carol", age: 18, surface: "search", candidates: append(cands[:11:11], cands[3]), k: 100},
		{user: "dave", age: 35, surface: "home", candidates: cands, exclude: cands[:6], k: 1},
		{user: "erin", age: 44, surface: "music", candidates: cands, k: 7},
	}
	// Catalogue and ids models take no candidates input: their requests
	// stack whatever their candidates, or without any.
	free := slices.Clone(queries)
	free[1].candidates = nil
	free[3].candidates = candidates(40, 3)
	free[4].candidates = []string{}
	for _, tc := range []struct {
		name     string
		mode     onnxgen.Mode
		out      Outputs
		batching *Batching
		queries  []query
	}{
		{"aligned", onnxgen.Aligned, Outputs{Scores: "scores"}, nil, queries},
		{"aligned, one request", onnxgen.Aligned, Outputs{Scores: "scores"}, nil, queries[2:3]},
		{"aligned, with the batching option", onnxgen.Aligned, Outputs{Scores: "scores"}, &Batching{MaxBatchSize: 8, BatchTimeout: time.Millisecond}, queries},
		{"catalogue", onnxgen.Catalogue, Outputs{Scores: "scores"}, nil, free},
		{"ids", onnxgen.IDs, Outputs{IDs: "ids", Scores: "scores"}, nil, free},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, p := loadMode(t, newRecsys(tc.mode), Config{Outputs: tc.out, Batching: tc.batching})
			reqs := make([]*backend.Request, len(tc.queries))
			for i, q := range tc.queries {
				reqs[i] = q.request(t, p)
			}
			runs := m.runs.Load()
			got, err := m.PredictBatch(context.Background(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			if n := m.runs.Load() - runs; n != 1 {
				t.Errorf("%d session runs for the batch, want 1", n)
			}
			if err := backendtest.CheckBatch(context.Background(), m, reqs, got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPredictBatchErrors(t *testing.T) {
	needRuntime(t)
	r := newRecsys(onnxgen.Aligned)
	p := plan(t, specUser, specAge, specSurf, specCand)
	dir := writeModel(t, r)
	m := load(t, dir, p, Config{})
	small := load(t, dir, p, Config{Batching: &Batching{MaxBatchSize: 2}})
	req := func(user string, ncands, k int) *backend.Request {
		return query{user: user, age: 30, surface: "home", candidates: candidates(ncands, 1), k: k}.request(t, p)
	}
	noCands := req("x", 10, 3)
	noCands.Candidates = nil
	badSurface := req("y", 10, 3)
	for j := range badSurface.Inputs {
		if badSurface.Inputs[j].Name == "surface" {
			badSurface.Inputs[j].Int64[0] = 99 // out of the bias table: the run fails
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		m       *Model
		ctx     context.Context
		reqs    []*backend.Request
		wantIs  error
		wantRun bool
	}{
		{"other shapes", m, context.Background(), []*backend.Request{req("a", 10, 3), req("b", 11, 3)}, backend.ErrNotStackable, false},
		{"more than max_batch_size", small, context.Background(), []*backend.Request{req("a", 10, 3), req("b", 10, 3), req("c", 10, 3)}, backend.ErrNotStackable, false},
		{"k 0", m, context.Background(), []*backend.Request{req("a", 10, 3), req("b", 10, 0)}, ErrBadInput, false},
		{"no candidates", m, context.Background(), []*backend.Request{req("a", 10, 3), noCands}, ErrBadInput, false},
		{"the runtime refuses an input", m, context.Background(), []*backend.Request{req("a", 10, 3), badSurface}, backend.ErrRejectedInput, true},
		{"cancelled", m, cancelled, []*backend.Request{req("a", 10, 3)}, context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := tc.m.runs.Load()
			got, err := tc.m.PredictBatch(tc.ctx, tc.reqs)
			if !errors.Is(err, tc.wantIs) || got != nil {
				t.Fatalf("PredictBatch = %v, %v; want no lists and %v", got, err, tc.wantIs)
			}
			if ran := tc.m.runs.Load() != runs; ran != tc.wantRun {
				t.Errorf("ran the model: %v, want %v", ran, tc.wantRun)
			}
		})
	}
	if got, err := m.PredictBatch(context.Background(), nil); err != nil || len(got) != 0 {
		t.Errorf("PredictBatch of no requests = %v, %v", got, err)
	}
}

// Outputs that do not fit the requests are the same bad output as
// Predict's: here 3 scores (the model scores its cands input, fed from
// features.recent) for 5 candidates.
func TestPredictBatchBadOutput(t *testing.T) {
	needRuntime(t)
	p := plan(t, specUser, specAge, specSurf,
		`"cands": {"from": "features.recent", "transform": "hash_bucket", "buckets": 200, "length": 3, "dtype": "int64"}`)
	m := load(t, writeModel(t, newRecsys(onnxgen.Aligned)), p, Config{})
	var reqs []*backend.Request
	for _, user := range []string{"u", "v"} {
		ins, err := p.Build(&featurizer.Request{UserID: user, Context: map[string]string{"surface": "home"},
			Features: map[string]any{"age": 40.0, "recent": []any{"a", "b"}}})
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, &backend.Request{Inputs: ins, Candidates: []string{"a", "b", "c", "d", "e"}, K: 2})
	}
	got, err := m.PredictBatch(context.Background(), reqs)
	if !errors.Is(err, backend.ErrBadOutput) || backend.Classify(err) != backend.ClassBadOutput || got != nil {
		t.Fatalf("PredictBatch = %v, %v; want ErrBadOutput", got, err)
	}
}
