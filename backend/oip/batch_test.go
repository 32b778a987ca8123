package oip_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/backend/oip/oiptest"
	"github.com/modelgate/modelgate/featurizer"
)

// startBatchModel serves mod (named "batch", version 1, scoring each row
// by its user) and opens it over protocol, reading the ids output when ids
// is set.
func startBatchModel(t *testing.T, protocol string, mod oiptest.Model, ids bool) (*oiptest.Server, *oip.Model, *featurizer.Plan) {
	t.Helper()
	mod.Name = "batch"
	mod.Versions = []string{"1"}
	mod.CandidatesInput = "cands"
	mod.KeyInput = "user"
	mod.Inputs = []oiptest.Tensor{{Name: "user", Datatype: "INT64", Shape: []int64{-1}}, {Name: "recent", Datatype: "BYTES", Shape: []int64{-1, -1}}}
	mod.Outputs = []oiptest.Tensor{{Name: "scores", Datatype: cmp.Or(mod.ScoresDatatype, "FP32"), Shape: []int64{-1, -1}}}
	spec := backendtest.BatchIDsSpec
	if ids {
		mod.Outputs = append(mod.Outputs, oiptest.Tensor{Name: "ids", Datatype: "BYTES", Shape: []int64{-1, -1}})
	} else {
		mod.Inputs = append(mod.Inputs, oiptest.Tensor{Name: "cands", Datatype: "BYTES", Shape: []int64{-1, -1}})
		spec = backendtest.BatchSpec
	}
	if mod.Flat {
		for i := range mod.Outputs {
			mod.Outputs[i].Shape = []int64{-1}
		}
	}
	s := startServer(t, &mod)
	p := plan(t, spec)
	cfg := config(s, protocol, mod.Name, p)
	if ids {
		cfg.Outputs.IDs = "ids"
	}
	return s, open(t, cfg, true), p
}

// PredictBatch must return, for every request, exactly what Predict returns
// for it alone, from one inference call whose inputs are the requests'
// stacked, over either protocol.
func TestPredictBatchMatchesPredict(t *testing.T) {
	catalogue := backendtest.BatchCatalogue()
	dup := append(slices.Clone(catalogue[:20]), catalogue[5], catalogue[7], catalogue[5])
	// Scores with ties (two decimals), so that the id order of equal
	// scores is tested too.
	ties := func(v, item string) float64 {
		return math.Round(oiptest.DefaultScore(v, item)*20) / 20
	}
	scoresEntries, idsEntries := backendtest.BatchEntries()
	cases := []struct {
		name    string
		model   oiptest.Model
		raw     bool
		ids     bool
		entries []backendtest.BatchEntry
	}{
		{name: "scores fp32", entries: scoresEntries},
		{name: "scores fp32 with ties", model: oiptest.Model{Score: ties}, entries: scoresEntries},
		{name: "scores fp64 raw", model: oiptest.Model{ScoresDatatype: "FP64"}, raw: true, entries: scoresEntries},
		{name: "scores one request", entries: scoresEntries[:1]},
		{name: "scores one request flat", model: oiptest.Model{Flat: true}, entries: scoresEntries[1:2]},
		{name: "ids+scores", model: oiptest.Model{Catalogue: catalogue}, ids: true, entries: idsEntries},
		{name: "ids+scores top 8", model: oiptest.Model{Catalogue: catalogue, TopN: 8}, ids: true, entries: idsEntries},
		{name: "ids+scores raw", model: oiptest.Model{Catalogue: catalogue, Score: ties}, raw: true, ids: true, entries: idsEntries},
		{name: "ids+scores duplicate ids", model: oiptest.Model{Catalogue: dup, Score: ties}, ids: true, entries: idsEntries},
		{name: "ids+scores one request flat", model: oiptest.Model{Catalogue: catalogue, Flat: true}, ids: true, entries: idsEntries[1:2]},
	}
	for _, protocol := range protocols {
		for _, tc := range cases {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				s, m, p := startBatchModel(t, protocol, tc.model, tc.ids)
				s.SetRawOutput(tc.raw)
				reqs, shapes := backendtest.BatchRequests(t, p, tc.entries, tc.ids)
				got, err := m.PredictBatch(context.Background(), reqs)
				if err != nil {
					t.Fatal(err)
				}
				if n := s.Calls("ModelInfer"); n != 1 {
					t.Fatalf("%d ModelInfer calls for the batch, want 1", n)
				}
				last, _ := s.LastRequest()
				if last.Protocol != protocol {
					t.Fatalf("the call went over %q", last.Protocol)
				}
				sent := map[string][]int64{}
				for _, in := range last.Infer.GetInputs() {
					sent[in.GetName()] = in.GetShape()
				}
				for name, want := range shapes {
					if !slices.Equal(sent[name], want) {
						t.Errorf("input %q of shape %v, want %v", name, sent[name], want)
					}
				}
				backendtest.CheckBatchLists(t, m, reqs, got)
			})
		}
	}
}

func TestPredictBatchErrors(t *testing.T) {
	cands := []string{"a", "b", "c"}
	// nan scores item b NaN for the row of nanKey (a user's hash bucket).
	var nanKey string
	nan := func(_, item string) float64 {
		if item == nanKey+"/b" {
			return math.NaN()
		}
		return 0.5
	}
	two := func(p *featurizer.Plan, recent1, recent2 []string, cands1, cands2 []string) []*backend.Request {
		return []*backend.Request{backendtest.BatchRequest(t, p, "u1", cands1, recent1, nil, 2), backendtest.BatchRequest(t, p, "u2", cands2, recent2, nil, 2)}
	}
	cases := []struct {
		name      string
		model     oiptest.Model
		fault     oiptest.Fault
		raw       bool
		grpc      bool // gRPC only: JSON has no NaN
		reqs      func(p *featurizer.Plan) []*backend.Request
		timeout   time.Duration
		wantIs    error
		wantClass string
		wantCalls int
	}{
		{name: "recent items of different lengths", wantIs: backend.ErrNotStackable, wantClass: backend.ClassOther,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				return two(p, []string{"x"}, []string{"x", "y"}, cands, cands)
			}},
		{name: "different numbers of candidates", wantIs: backend.ErrNotStackable, wantClass: backend.ClassOther,
			reqs: func(p *featurizer.Plan) []*backend.Request { return two(p, nil, nil, cands, cands[:2]) }},
		{name: "more candidates than a response may rank", wantIs: backend.ErrNotStackable, wantClass: backend.ClassOther,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				many := make([]string, backend.MaxOutputRows/2+1)
				for i := range many {
					many[i] = fmt.Sprint(i)
				}
				return two(p, nil, nil, many, many)
			}},
		{name: "an input of another datatype", wantIs: backend.ErrNotStackable, wantClass: backend.ClassOther,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				reqs := two(p, nil, nil, cands, cands)
				u := reqs[0].Input("user")
				u.DType, u.Int64, u.Int32 = featurizer.Int32, nil, []int32{int32(u.Int64[0])}
				return reqs
			}},
		{name: "k 0", wantIs: oip.ErrBadInput, wantClass: backend.ClassRejected,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				reqs := two(p, nil, nil, cands, cands)
				reqs[1].K = 0
				return reqs
			}},
		{name: "no candidates", wantIs: oip.ErrBadInput, wantClass: backend.ClassRejected,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				reqs := two(p, nil, nil, cands, cands)
				reqs[1].Candidates = nil
				return reqs
			}},
		{name: "a malformed input", wantIs: oip.ErrBadInput, wantClass: backend.ClassRejected,
			reqs: func(p *featurizer.Plan) []*backend.Request {
				reqs := two(p, []string{"x"}, []string{"y"}, cands, cands)
				reqs[0].Input("recent").String = nil // 0 elements for [1, 1]; 2 and 0 would stack to [2, 1]
				reqs[1].Input("recent").String = []string{"y", "z"}
				return reqs
			}},
		{name: "wrong datatype", fault: oiptest.Fault{BadOutput: oiptest.WrongDatatype}, wantIs: backend.ErrBadOutput, wantClass: backend.ClassBadOutput, wantCalls: 1},
		{name: "wrong shape", fault: oiptest.Fault{BadOutput: oiptest.WrongShape}, wantIs: backend.ErrBadOutput, wantClass: backend.ClassBadOutput, wantCalls: 1},
		{name: "missing scores", fault: oiptest.Fault{BadOutput: oiptest.MissingScores}, wantIs: backend.ErrBadOutput, wantClass: backend.ClassBadOutput, wantCalls: 1},
		{name: "malformed", fault: oiptest.Fault{BadOutput: oiptest.Malformed}, raw: true, wantIs: backend.ErrBadOutput, wantClass: backend.ClassBadOutput, wantCalls: 1},
		{name: "one row's score is NaN", model: oiptest.Model{Score: nan}, grpc: true, wantIs: backend.ErrBadOutput, wantClass: backend.ClassBadOutput, wantCalls: 1},
		{name: "invalid argument", fault: oiptest.Fault{Fail: codes.InvalidArgument}, wantIs: backend.ErrRejectedInput, wantClass: backend.ClassRejected, wantCalls: 1},
		{name: "unavailable", fault: oiptest.Fault{Fail: codes.Unavailable}, wantIs: backend.ErrUnavailable, wantClass: backend.ClassUnavailable, wantCalls: 1},
		{name: "load shed", fault: oiptest.Fault{Fail: codes.ResourceExhausted}, wantIs: backend.ErrUnavailable, wantClass: backend.ClassUnavailable, wantCalls: 1},
		{name: "deadline", fault: oiptest.Fault{Delay: 5 * time.Second}, timeout: 50 * time.Millisecond, wantIs: context.DeadlineExceeded, wantClass: backend.ClassDeadline, wantCalls: 1},
	}
	for _, protocol := range protocols {
		for _, tc := range cases {
			if tc.grpc && protocol != oip.ProtocolGRPC {
				continue
			}
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				s, m, p := startBatchModel(t, protocol, tc.model, false)
				s.SetFault(tc.fault)
				s.SetRawOutput(tc.raw)
				reqs := two(p, nil, nil, cands, cands)
				if tc.reqs != nil {
					reqs = tc.reqs(p)
				}
				nanKey = fmt.Sprint(reqs[len(reqs)-1].Input("user").Int64[0])
				backendtest.CheckBatchError(t, m, reqs, tc.timeout, tc.wantIs, tc.wantClass, func() int { return s.Calls("ModelInfer") }, tc.wantCalls)
			})
		}
	}
}

// Requests with an empty candidates list get no items without a call, as
// from Predict; a batch of only such requests makes no call at all.
func TestPredictBatchEmptyCandidatesSpareTheCall(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			s, m, p := startBatchModel(t, protocol, oiptest.Model{}, false)
			reqs := []*backend.Request{backendtest.BatchRequest(t, p, "u1", []string{}, nil, nil, 2), backendtest.BatchRequest(t, p, "u2", []string{}, nil, nil, 3)}
			got, err := m.PredictBatch(context.Background(), reqs)
			if err != nil || len(got) != 2 || got[0] == nil || len(got[0]) != 0 || got[1] == nil || len(got[1]) != 0 {
				t.Fatalf("PredictBatch = %#v, %v; want two empty lists", got, err)
			}
			if n := s.Calls("ModelInfer"); n != 0 {
				t.Errorf("%d ModelInfer calls, want none", n)
			}
			if got, err := m.PredictBatch(context.Background(), nil); err != nil || len(got) != 0 {
				t.Errorf("PredictBatch of no requests = %v, %v", got, err)
			}
		})
	}
}

// BenchmarkPredictBatch is 64 users' top 10 of 100 candidates each in one
// PredictBatch (one inference call, inputs stacked) against 64 Predict
// calls, over loopback gRPC and HTTP to oiptest, whose own work is in the
// time too.
func BenchmarkPredictBatch(b *testing.B) {
	p := plan(b, fullSpec)
	for _, protocol := range protocols {
		b.Run("protocol="+protocol, func(b *testing.B) {
			mod := ranker()
			for i := range mod.Inputs {
				mod.Inputs[i].Shape[0] = -1 // a batch dimension ("age" is [1])
			}
			s := startServer(b, mod)
			m := open(b, config(s, protocol, "ranker", p), true)
			cands := make([]string, 100)
			for i := range cands {
				cands[i] = fmt.Sprintf("item-%05d", i)
			}
			reqs := make([]*backend.Request, 64)
			for i := range reqs {
				reqs[i] = request(b, p, fmt.Sprint("u", i), cands, 10)
			}
			backendtest.BenchBatch(b, m, reqs)
		})
	}
}
