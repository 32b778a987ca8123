package router

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
)

func (s *scorer) PredictBatch(ctx context.Context, reqs []*backend.Request) ([][]backend.Item, error) {
	s.batches.Add(1)
	s.batched.Add(int64(len(reqs)))
	switch m, _ := s.batchMode.Load().(string); m {
	case "notstack":
		return nil, backend.ErrNotStackable
	case "fail":
		return nil, fmt.Errorf("connection refused: %w", backend.ErrUnavailable)
	case "reject":
		return nil, backend.RejectInput(nil, "one of the batch's inputs is refused")
	}
	out := make([][]backend.Item, len(reqs))
	for i, req := range reqs {
		items, err := s.answer(ctx, req)
		if err != nil {
			return nil, err
		}
		out[i] = items
	}
	return out, nil
}

func batchOf(n int, mod func(i int, r *Request)) []*Request {
	reqs := make([]*Request, n)
	for i := range reqs {
		reqs[i] = &Request{UserID: fmt.Sprint("u", i), K: 3, Candidates: []string{"a", "b", "c", "d"}, Exclude: []string{fmt.Sprint([]string{"a", "b", "c", "d"}[i%4])}}
		if mod != nil {
			mod(i, reqs[i])
		}
	}
	return reqs
}

// Every entry of a batch is its own prediction, as if sent alone: its own
// token, trial and answer; the entries that chose one arm share its call.
func TestRecommendBatch(t *testing.T) {
	ctx := context.Background()
	type want struct {
		batches, batched, calls int64 // of m@1's scorer
		served                  string
		errs                    map[int]string // entry -> error code
	}
	tests := []struct {
		name      string
		endpoint  string
		mode      string
		batchMode string
		reqs      []*Request
		want      want
	}{
		{"one call for all", `{"arms": ["m@1"]}`, "ok", "", batchOf(20, nil),
			want{batches: 1, batched: 20, served: "m@1"}},
		{"an entry at fault alone", `{"arms": ["m@1"]}`, "ok", "", batchOf(5, func(i int, r *Request) {
			if i == 2 {
				r.UserID = ""
			}
			if i == 3 {
				r.K = 5000
			}
		}), want{batches: 1, batched: 3, served: "m@1", errs: map[int]string{2: "missing_field", 3: "invalid_k"}}},
		{"one valid entry: its own call", `{"arms": ["m@1"]}`, "ok", "", batchOf(2, func(i int, r *Request) {
			if i == 0 {
				r.UserID = ""
			}
		}), want{calls: 1, served: "m@1", errs: map[int]string{0: "missing_field"}}},
		{"requests that do not stack: one call each", `{"arms": ["m@1"]}`, "ok", "notstack", batchOf(4, nil),
			want{batches: 1, batched: 4, calls: 4, served: "m@1"}},
		{"a batch refused: each request asked alone", `{"arms": ["m@1"]}`, "reject", "reject", batchOf(3, nil),
			want{batches: 1, batched: 3, calls: 3, errs: map[int]string{0: "model_rejected_input", 1: "model_rejected_input", 2: "model_rejected_input"}}},
		{"a sick answer: each request asked alone, then the fallback", `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"min_share": 0}}`, "inf", "", batchOf(3, nil),
			want{batches: 1, batched: 3, calls: 3, served: "m@2"}},
		{"the backend down: every request falls back", `{"arms": ["m@1", "m@2"], "fallback": "m@2", "policy": {"min_share": 0}}`, "ok", "fail", batchOf(6, nil),
			want{batches: 1, batched: 6, served: "m@2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.endpoint)
			s1 := f.scorers["m@1"]
			// m@1 wins every draw; m@2, when there, is its fallback.
			f.table.Cell(counters.Key{Endpoint: "e", Segment: "all", Arm: "m@1"}).AddDurable(10000, 9000, 0)
			f.table.Cell(counters.Key{Endpoint: "e", Segment: "all", Arm: "m@2"}).AddDurable(10000, 0, 0)
			f.table.Admit("e", "all", 10)
			// A first call computes the segment's shares: from then on
			// every draw is m@1.
			if _, err := f.r.Recommend(ctx, &Request{Endpoint: "e", UserID: "warm"}); err != nil {
				t.Fatal(err)
			}
			s1.calls.Store(0)
			before := f.trials(tc.want.served, "all")
			s1.mode.Store(tc.mode)
			s1.batchMode.Store(tc.batchMode)
			resps, errs, err := f.r.RecommendBatch(ctx, "e", tc.reqs)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			served := 0
			for i := range tc.reqs {
				code := tc.want.errs[i]
				if code != "" {
					if fe := fault.As(errs[i]); fe == nil || fe.Code != code || resps[i] != nil {
						t.Errorf("entry %d: %v, %+v; want error %s", i, errs[i], resps[i], code)
					}
					continue
				}
				if errs[i] != nil || resps[i] == nil {
					t.Fatalf("entry %d: %v", i, errs[i])
				}
				r := resps[i]
				if r.Arm != tc.want.served || seen[r.PredictionID] {
					t.Errorf("entry %d served by %s (token seen before: %v), want %s", i, r.Arm, seen[r.PredictionID], tc.want.served)
				}
				seen[r.PredictionID] = true
				served++
				// What a request alone gets: its candidates without its
				// exclusion, best first, at most k.
				alone := []string{}
				for _, id := range tc.reqs[i].Candidates {
					if id != tc.reqs[i].Exclude[0] && len(alone) < 3 {
						alone = append(alone, id)
					}
				}
				if got := ids(r.Items); fmt.Sprint(got) != fmt.Sprint(alone) {
					t.Errorf("entry %d items %v, want %v", i, got, alone)
				}
				tok, err := f.signer.Verify(r.PredictionID)
				if err != nil || tok.Arm != r.Arm || tok.Items != len(r.Items) {
					t.Errorf("entry %d token %+v, %v", i, tok, err)
				}
			}
			if got := s1.batches.Load(); got != tc.want.batches {
				t.Errorf("%d batched calls, want %d", got, tc.want.batches)
			}
			if got := s1.batched.Load(); got != tc.want.batched {
				t.Errorf("%d requests in batched calls, want %d", got, tc.want.batched)
			}
			if got := s1.calls.Load(); got != tc.want.calls {
				t.Errorf("%d single calls, want %d", got, tc.want.calls)
			}
			if got := f.trials(tc.want.served, "all") - before; tc.want.served != "" && got != uint64(served) {
				t.Errorf("%d trials of %s, want %d: one per served entry", got, tc.want.served, served)
			}
		})
	}
}

func ids(items []backend.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func TestRecommendBatchWholeCallErrors(t *testing.T) {
	f := newFixture(t, `{"arms": ["m@1"]}`)
	ctx := context.Background()
	tests := []struct {
		name     string
		endpoint string
		n        int
		code     string
	}{
		{"no requests", "e", 0, "invalid_requests"},
		{"too many", "e", MaxBatch + 1, "invalid_requests"},
		{"an unknown endpoint", "nope", 1, "endpoint_not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.r.RecommendBatch(ctx, tc.endpoint, batchOf(tc.n, nil))
			if fe := fault.As(err); fe == nil || fe.Code != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
	if _, errs, err := f.r.RecommendBatch(ctx, "e", batchOf(MaxBatch, nil)); err != nil || errors.Join(errs...) != nil {
		t.Fatalf("a full batch: %v, %v", err, errors.Join(errs...))
	}
}
