package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/featurizer"
)

// batchRequests returns varied requests against a randomModel of n items
// and users: known, unknown and cold users, recent items, k from 1 past
// the catalogue, exclude sets (at block edges too) and candidates.
func batchRequests(n, users int) []*backend.Request {
	r := rand.New(rand.NewPCG(5, 5))
	item := func() string { return fmt.Sprint("i", r.IntN(n)) }
	var reqs []*backend.Request
	for j := range 40 {
		req := &backend.Request{K: []int{1, 3, 10, 100, n + 5}[j%5]}
		switch j % 4 {
		case 0, 1:
			req.Inputs = []featurizer.Tensor{userInput(fmt.Sprint("u", r.IntN(users)))}
		case 2:
			req.Inputs = append([]featurizer.Tensor{userInput("nobody")}, recent(item(), item(), "unknown")...)
		case 3: // cold start
		}
		switch j % 3 {
		case 1:
			req.Exclude = set(item(), item(), "i0", fmt.Sprint("i", n-1), "i4095", "i4096", "unknown")
		case 2:
			req.Exclude = make(map[string]struct{})
			for range 200 {
				req.Exclude[item()] = struct{}{}
			}
		}
		if j%7 == 6 {
			req.Candidates = []string{item(), item(), item(), "unknown", "i0"}
		}
		if j%11 == 10 {
			req.Candidates = []string{}
		}
		reqs = append(reqs, req)
	}
	return reqs
}

// PredictBatch must return, for every request, exactly what Predict
// returns for it alone.
func TestPredictBatchMatchesPredict(t *testing.T) {
	const n, users = 10_000, 30
	dot := randomModel(t, n, users, 4, 11)
	wide := randomModel(t, 3000, users, 100, 12)
	cos := validModel()
	cos.config = `{"format": "embedding/v1", "scoring": "cosine"}`
	small := writeModel(t, validModel())
	smallCos := writeModel(t, cos)
	smallReqs := []*backend.Request{
		{Inputs: []featurizer.Tensor{userInput("u1")}, K: 4},
		{Inputs: []featurizer.Tensor{userInput("u2")}, K: 6, Exclude: set("a")},
		{Inputs: recent("a", "b"), K: 3},
		{K: 2},
		{Inputs: []featurizer.Tensor{userInput("u1")}, Candidates: []string{"b", "c", "f", "c"}, Exclude: set("c"), K: 10},
		{Inputs: []featurizer.Tensor{userInput("u1")}, K: 1, Exclude: set("a", "b", "c", "d", "e", "f")},
	}
	reqs := batchRequests(n, users)
	wideReqs := batchRequests(3000, users)
	for _, tc := range []struct {
		name string
		dir  string
		reqs []*backend.Request
	}{
		{"empty batch", dot, nil},
		{"one request", dot, reqs[:1]},
		{"varied requests", dot, reqs},
		{"reversed", dot, reversed(reqs)},
		{"one user twice", dot, []*backend.Request{reqs[0], reqs[0]}},
		{"only candidates", dot, []*backend.Request{reqs[6], reqs[13]}},
		{"blocks of few rows", wide, wideReqs},
		{"small, dot", small, smallReqs},
		{"small, cosine", smallCos, smallReqs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := embedded.Load(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.PredictBatch(context.Background(), tc.reqs)
			if err != nil {
				t.Fatal(err)
			}
			if err := backendtest.CheckBatch(context.Background(), m, tc.reqs, got); err != nil {
				t.Error(err)
			}
		})
	}
}

func reversed(reqs []*backend.Request) []*backend.Request {
	out := slices.Clone(reqs)
	slices.Reverse(out)
	return out
}

func TestPredictBatchErrors(t *testing.T) {
	m, err := embedded.Load(randomModel(t, 20000, 2, 8, 1))
	if err != nil {
		t.Fatal(err)
	}
	good := &backend.Request{Inputs: []featurizer.Tensor{userInput("u0")}, K: 10}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		reqs []*backend.Request
		want error
	}{
		{"k 0", context.Background(), []*backend.Request{good, {K: 0}}, embedded.ErrBadInput},
		{"bad user_id", context.Background(), []*backend.Request{good, {K: 1, Inputs: []featurizer.Tensor{
			{Name: "user_id", DType: featurizer.Int64, Shape: []int64{1}, Int64: []int64{7}}}}}, backend.ErrRejectedInput},
		{"cancelled", cancelled, []*backend.Request{good}, context.Canceled},
		{"cancelled, candidates", cancelled, []*backend.Request{{K: 1, Candidates: ids("i", 20000)}}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.PredictBatch(tc.ctx, tc.reqs)
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("got %d lists and %v, want no list and %v", len(got), err, tc.want)
			}
		})
	}
}

// BenchmarkPredictBatch scores 64 users in one PredictBatch, against 64
// Predict calls, on the model of BenchmarkTop10_100kx64.
func BenchmarkPredictBatch(b *testing.B) {
	m := benchModel(b)
	reqs := make([]*backend.Request, 64)
	for i := range reqs {
		reqs[i] = &backend.Request{Inputs: []featurizer.Tensor{userInput(fmt.Sprint("u", i*7))}, K: 10}
	}
	backendtest.BenchBatch(b, m, reqs)
}
