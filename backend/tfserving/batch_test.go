package tfserving_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/backend/tfserving/tfservingtest"
	"github.com/modelgate/modelgate/featurizer"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
)

// startBatchModel serves mod (named name, version 1, scoring each row by
// its user) and opens it, reading the ids output when ids is set.
func startBatchModel(t *testing.T, pool *tfserving.Pool, mod tfservingtest.Model, ids bool) (*tfservingtest.Server, *tfserving.Model, *featurizer.Plan) {
	t.Helper()
	mod.Name = "batch"
	mod.Versions = map[int64]tfservingtest.State{1: tfservingtest.StateAvailable}
	mod.CandidatesInput = "cands"
	mod.KeyInput = "user"
	scores := tfservingtest.Spec{DType: dtFloat, Shape: []int64{-1, -1}}
	if mod.ScoresDType == dtDouble {
		scores.DType = dtDouble
	}
	outs := map[string]tfservingtest.Spec{"scores": scores}
	ins := map[string]tfservingtest.Spec{"user": {DType: dtInt64, Shape: []int64{-1}}, "recent": {DType: dtString, Shape: []int64{-1, -1}}}
	spec := backendtest.BatchIDsSpec
	if ids {
		outs["ids"] = tfservingtest.Spec{DType: dtString, Shape: []int64{-1, -1}}
	} else {
		ins["cands"] = tfservingtest.Spec{DType: dtString, Shape: []int64{-1, -1}}
		spec = backendtest.BatchSpec
	}
	mod.Signatures = map[string]*tfpb.SignatureDef{"serving_default": tfservingtest.Signature(ins, outs)}
	srv := startServer(t, &mod)
	p := plan(t, spec)
	cfg := rankerConfig(srv.Addr(), p)
	cfg.ModelName = mod.Name
	if ids {
		cfg.Outputs.IDs = "ids"
	}
	return srv, open(t, pool, cfg, true), p
}

// PredictBatch must return, for every request, exactly what Predict returns
// for it alone, from one call to TF Serving whose inputs are the requests'
// stacked.
func TestPredictBatchMatchesPredict(t *testing.T) {
	catalogue := backendtest.BatchCatalogue()
	dup := append(slices.Clone(catalogue[:20]), catalogue[5], catalogue[7], catalogue[5])
	// Scores with ties (two decimals), so that the id order of equal
	// scores is tested too.
	ties := func(v int64, item string) float64 {
		return math.Round(tfservingtest.DefaultScore(v, item)*20) / 20
	}
	scoresEntries, idsEntries := backendtest.BatchEntries()
	for _, tc := range []struct {
		name    string
		model   tfservingtest.Model
		ids     bool
		entries []backendtest.BatchEntry
	}{
		{name: "scores float", entries: scoresEntries},
		{name: "scores float with ties", model: tfservingtest.Model{Score: ties}, entries: scoresEntries},
		{name: "scores double tensor_content", model: tfservingtest.Model{ScoresDType: dtDouble, TensorContent: true}, entries: scoresEntries},
		{name: "scores one request", entries: scoresEntries[:1]},
		{name: "scores one request flat", model: tfservingtest.Model{Flat: true}, entries: scoresEntries[1:2]},
		{name: "ids+scores", model: tfservingtest.Model{Catalogue: catalogue}, ids: true, entries: idsEntries},
		{name: "ids+scores top 8", model: tfservingtest.Model{Catalogue: catalogue, TopN: 8}, ids: true, entries: idsEntries},
		{name: "ids+scores tensor_content", model: tfservingtest.Model{Catalogue: catalogue, TensorContent: true, Score: ties}, ids: true, entries: idsEntries},
		{name: "ids+scores duplicate ids", model: tfservingtest.Model{Catalogue: dup, Score: ties}, ids: true, entries: idsEntries},
		{name: "ids+scores one request flat", model: tfservingtest.Model{Catalogue: catalogue, Flat: true}, ids: true, entries: idsEntries[1:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := tfserving.NewPool()
			defer pool.Close()
			srv, m, p := startBatchModel(t, pool, tc.model, tc.ids)
			reqs, shapes := backendtest.BatchRequests(t, p, tc.entries, tc.ids)
			got, err := m.PredictBatch(context.Background(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			if n := srv.Calls("Predict"); n != 1 {
				t.Fatalf("%d Predict calls for the batch, want 1", n)
			}
			sent := srv.LastRequest().GetInputs()
			for name, want := range shapes {
				var dims []int64
				for _, d := range sent[name].GetTensorShape().GetDim() {
					dims = append(dims, d.GetSize())
				}
				if !slices.Equal(dims, want) {
					t.Errorf("input %q of shape %v, want %v", name, dims, want)
				}
			}
			backendtest.CheckBatchLists(t, m, reqs, got)
		})
	}
}

func TestPredictBatchErrors(t *testing.T) {
	pool := tfserving.NewPool()
	defer pool.Close()
	cands := []string{"a", "b", "c"}
	// nan scores item b NaN for the row of nanKey (a user's hash bucket).
	var nanKey string
	nan := func(_ int64, item string) float64 {
		if item == nanKey+"/b" {
			return math.NaN()
		}
		return 0.5
	}
	for _, tc := range []struct {
		name      string
		model     tfservingtest.Model
		fault     tfservingtest.Fault
		reqs      func(p *featurizer.Plan) []*backend.Request
		timeout   time.Duration
		wantIs    error
		wantClass string
		wantCalls int
	}{
		{name: "recent items of different lengths", wantIs: backend.ErrNotStackable, wantClass: "other",
			reqs: func(p *featurizer.Plan) []*backend.Request {
				return []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands, []string{"x"}, nil, 2), backendtest.BatchRequest(t, p, "u2", cands, []string{"x", "y"}, nil, 2)}
			}},
		{name: "different numbers of candidates", wantIs: backend.ErrNotStackable, wantClass: "other",
			reqs: func(p *featurizer.Plan) []*backend.Request {
				return []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands, nil, nil, 2), backendtest.BatchRequest(t, p, "u2", cands[:2], nil, nil, 2)}
			}},
		{name: "more candidates than a response may rank", wantIs: backend.ErrNotStackable, wantClass: "other",
			reqs: func(p *featurizer.Plan) []*backend.Request {
				many := make([]string, tfserving.MaxOutputRows/2+1)
				for i := range many {
					many[i] = fmt.Sprint(i)
				}
				return []*backend.Request{backendtest.BatchRequest(t, p, "u1", many, nil, nil, 2), backendtest.BatchRequest(t, p, "u2", many, nil, nil, 2)}
			}},
		{name: "k 0", wantIs: tfserving.ErrBadInput, wantClass: "rejected_input",
			reqs: func(p *featurizer.Plan) []*backend.Request {
				return []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands, nil, nil, 2), backendtest.BatchRequest(t, p, "u2", cands, nil, nil, 0)}
			}},
		{name: "no candidates", wantIs: tfserving.ErrBadInput, wantClass: "rejected_input",
			reqs: func(p *featurizer.Plan) []*backend.Request {
				r := backendtest.BatchRequest(t, p, "u2", cands, nil, nil, 2)
				r.Candidates = nil
				return []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands, nil, nil, 2), r}
			}},
		{name: "wrong dtype", fault: tfservingtest.Fault{BadOutput: tfservingtest.WrongDType}, wantIs: backend.ErrBadOutput, wantClass: "bad_output", wantCalls: 1},
		{name: "wrong shape", fault: tfservingtest.Fault{BadOutput: tfservingtest.WrongShape}, wantIs: backend.ErrBadOutput, wantClass: "bad_output", wantCalls: 1},
		{name: "missing output", fault: tfservingtest.Fault{BadOutput: tfservingtest.MissingScore}, wantIs: backend.ErrBadOutput, wantClass: "bad_output", wantCalls: 1},
		{name: "one row's score is NaN", model: tfservingtest.Model{Score: nan}, wantIs: backend.ErrBadOutput, wantClass: "bad_output", wantCalls: 1,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				return []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands, nil, nil, 2), backendtest.BatchRequest(t, p, "u-nan", cands, nil, nil, 2)}
			}},
		{name: "invalid argument", fault: tfservingtest.Fault{Fail: codes.InvalidArgument}, wantIs: backend.ErrRejectedInput, wantClass: "rejected_input", wantCalls: 1},
		{name: "unavailable", fault: tfservingtest.Fault{Fail: codes.Unavailable}, wantIs: backend.ErrUnavailable, wantClass: "unavailable", wantCalls: 1},
		{name: "deadline", fault: tfservingtest.Fault{Delay: 5 * time.Second}, timeout: 50 * time.Millisecond, wantIs: context.DeadlineExceeded, wantClass: "deadline", wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, m, p := startBatchModel(t, pool, tc.model, false)
			srv.SetFault(tc.fault)
			reqs := []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands, nil, nil, 2), backendtest.BatchRequest(t, p, "u2", cands, nil, nil, 3)}
			if tc.reqs != nil {
				reqs = tc.reqs(p)
			}
			nanKey = fmt.Sprint(reqs[len(reqs)-1].Input("user").Int64[0])
			backendtest.CheckBatchError(t, m, reqs, tc.timeout, tc.wantIs, tc.wantClass, func() int { return srv.Calls("Predict") }, tc.wantCalls)
		})
	}
}

// Requests with an empty candidates list get no items without a call, as
// from Predict; a batch of only such requests makes no call at all.
func TestPredictBatchEmptyCandidatesSpareTheCall(t *testing.T) {
	pool := tfserving.NewPool()
	defer pool.Close()
	srv, m, p := startBatchModel(t, pool, tfservingtest.Model{}, false)
	reqs := []*backend.Request{backendtest.BatchRequest(t, p, "u1", []string{}, nil, nil, 2), backendtest.BatchRequest(t, p, "u2", []string{}, nil, nil, 3)}
	got, err := m.PredictBatch(context.Background(), reqs)
	if err != nil || len(got) != 2 || got[0] == nil || len(got[0]) != 0 || got[1] == nil || len(got[1]) != 0 {
		t.Fatalf("PredictBatch = %#v, %v; want two empty lists", got, err)
	}
	if n := srv.Calls("Predict"); n != 0 {
		t.Errorf("%d Predict calls, want none", n)
	}
	if got, err := m.PredictBatch(context.Background(), nil); err != nil || len(got) != 0 {
		t.Errorf("PredictBatch of no requests = %v, %v", got, err)
	}
}

// BenchmarkPredictBatch is 64 users' top 10 of 100 candidates each in one
// PredictBatch (one call, inputs stacked) against 64 Predict calls, over
// loopback gRPC to tfservingtest, whose own work is in the time too.
func BenchmarkPredictBatch(b *testing.B) {
	srv, err := tfservingtest.Start(ranker())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	p := plan(b, rankerSpec)
	pool := tfserving.NewPool()
	defer pool.Close()
	m := open(b, pool, rankerConfig(srv.Addr(), p), true)
	cands := make([]string, 100)
	for i := range cands {
		cands[i] = fmt.Sprintf("item-%05d", i)
	}
	reqs := make([]*backend.Request, 64)
	for i := range reqs {
		reqs[i] = request(b, p, fmt.Sprint("u", i), cands, 10)
	}
	backendtest.BenchBatch(b, m, reqs)
}
