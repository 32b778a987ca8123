package backendtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

// CheckBatch checks lists, what a BatchScorer's PredictBatch returned for
// reqs, against what s.Predict returns for each request alone: one list per
// request, each with the same items, scores and order, and nil only where
// Predict's is (a nil list encodes as JSON null, an empty one as []). It
// returns an error saying where they differ, or Predict's error.
func CheckBatch(ctx context.Context, s backend.Scorer, reqs []*backend.Request, lists [][]backend.Item) error {
	if len(lists) != len(reqs) {
		return fmt.Errorf("%d lists for %d requests", len(lists), len(reqs))
	}
	for i, req := range reqs {
		want, err := s.Predict(ctx, req)
		if err != nil {
			return fmt.Errorf("request %d alone: %w", i, err)
		}
		if !slices.Equal(lists[i], want) || (lists[i] == nil) != (want == nil) {
			return fmt.Errorf("request %d (k %d, %d candidates, %d excluded):\n got %v\nwant %v",
				i, req.K, len(req.Candidates), len(req.Exclude), lists[i], want)
		}
	}
	return nil
}

// BenchBatch runs two sub-benchmarks over reqs: "mode=batch", one
// PredictBatch of them all, and "mode=predict", one Predict each, so that
// benchstat -col /mode compares them.
func BenchBatch(b *testing.B, s backend.BatchScorer, reqs []*backend.Request) {
	ctx := context.Background()
	b.Run("mode=batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.PredictBatch(ctx, reqs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mode=predict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, req := range reqs {
				if _, err := s.Predict(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// The feature specs of the PredictBatch tests of remote backends: a user,
// the candidates and a list of recent items, whose length makes the
// requests' shapes (BatchSpec); BatchIDsSpec, for models that rank their
// own ids, has no candidates.
const (
	BatchSpec = `{"inputs": {
  "user":   {"from": "user_id", "transform": "hash_bucket", "buckets": 1000, "dtype": "int64"},
  "cands":  {"from": "candidates", "transform": "list", "dtype": "string", "default": []},
  "recent": {"from": "features.recent", "transform": "list", "dtype": "string", "default": []}}}`
	BatchIDsSpec = `{"inputs": {
  "user":   {"from": "user_id", "transform": "hash_bucket", "buckets": 1000, "dtype": "int64"},
  "recent": {"from": "features.recent", "transform": "list", "dtype": "string", "default": []}}}`
)

// BatchEntry is one request of a PredictBatch test: a user, its
// candidates, its recent items (features.recent), the ids it excludes and
// k.
type BatchEntry struct {
	User                   string
	Cands, Recent, Exclude []string
	K                      int
}

// Request builds the entry's request with p (BatchSpec or BatchIDsSpec).
func (e BatchEntry) Request(t testing.TB, p *featurizer.Plan) *backend.Request {
	t.Helper()
	return BatchRequest(t, p, e.User, e.Cands, e.Recent, e.Exclude, e.K)
}

// BatchRequest builds with p the request of a user with candidates, recent
// items, excluded items and k.
func BatchRequest(t testing.TB, p *featurizer.Plan, user string, cands, recent, exclude []string, k int) *backend.Request {
	t.Helper()
	rec := make([]any, len(recent))
	for i, r := range recent {
		rec[i] = r
	}
	in, err := p.Build(&featurizer.Request{UserID: user, Candidates: cands, Features: map[string]any{"recent": rec}})
	if err != nil {
		t.Fatal(err)
	}
	req := &backend.Request{Inputs: in, Candidates: cands, K: k}
	if exclude != nil {
		req.Exclude = map[string]struct{}{}
		for _, x := range exclude {
			req.Exclude[x] = struct{}{}
		}
	}
	return req
}

// BatchCatalogue is the catalogue of the PredictBatch tests' models that
// rank their own ids: item-00 to item-59.
func BatchCatalogue() []string {
	c := make([]string, 60)
	for i := range c {
		c[i] = fmt.Sprintf("item-%02d", i)
	}
	return c
}

// BatchEntries are the batches of the PredictBatch tests, of the items of
// BatchCatalogue: scores, for a model that scores the candidates (as many
// in each request, one of them twice in one, none in another: no call for
// it), with k and exclusions of all kinds; ids, for a model that ranks its
// own ids, with and without candidates.
func BatchEntries() (scores, ids []BatchEntry) {
	catalogue := BatchCatalogue()
	cands := catalogue[10:22]
	cands2 := append(slices.Clone(catalogue[30:41]), catalogue[31]) // as many, one twice
	scores = []BatchEntry{
		{"u1", cands, []string{"a", "b"}, nil, 3},
		{"u2", cands, []string{"b", "c"}, []string{cands[0], cands[5], "zz"}, 5},
		{"u3", cands2, []string{"c", "d"}, nil, 100},
		{"u1", cands2, []string{"d", "e"}, []string{cands2[1]}, 1},
		{"u4", []string{}, []string{"e", "f"}, nil, 3}, // no call for it
		{"u5", cands, []string{"f", "g"}, cands, 4},
	}
	ids = []BatchEntry{
		{"u1", nil, []string{"a", "b"}, nil, 3},
		{"u2", nil, []string{"c", "d"}, []string{catalogue[3], catalogue[9]}, 10},
		{"u3", []string{catalogue[4], catalogue[50], "zz", catalogue[4]}, []string{"e", "f"}, nil, 5},
		{"u4", []string{}, []string{"g", "h"}, nil, 5},
		{"u5", nil, []string{"i", "j"}, nil, 1000},
		{"u2", catalogue[:30], []string{"k", "l"}, catalogue[:10], 7},
	}
	return scores, ids
}

// CheckBatchError runs a PredictBatch that must fail, with a deadline of
// timeout when it is not 0, and checks that it returns no lists and an
// error matching wantIs of class wantClass (backend.Classify), and that
// the server then saw wantCalls calls, as calls says.
func CheckBatchError(t testing.TB, s backend.BatchScorer, reqs []*backend.Request, timeout time.Duration,
	wantIs error, wantClass string, calls func() int, wantCalls int) {
	t.Helper()
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	got, err := s.PredictBatch(ctx, reqs)
	if !errors.Is(err, wantIs) || got != nil {
		t.Fatalf("PredictBatch = %v, %v; want no lists and %v", got, err, wantIs)
	}
	if c := backend.Classify(err); c != wantClass {
		t.Errorf("Classify(%v) = %q, want %q", err, c, wantClass)
	}
	if n := calls(); n != wantCalls {
		t.Errorf("%d calls, want %d", n, wantCalls)
	}
}

// BatchRequests builds the requests of entries with p, and the shapes
// their inputs stack to in the one call (the requests with candidates, or
// all when the model ranks its own ids, as the ids mode says): user [B],
// recent [B, 2] and, in the scores mode, cands [B, C].
func BatchRequests(t testing.TB, p *featurizer.Plan, entries []BatchEntry, ids bool) ([]*backend.Request, map[string][]int64) {
	t.Helper()
	reqs := make([]*backend.Request, len(entries))
	b, c := 0, 0 // the requests that need the call, their candidates
	for i, e := range entries {
		reqs[i] = e.Request(t, p)
		if ids || len(e.Cands) > 0 {
			b++
			c = len(e.Cands)
		}
	}
	shapes := map[string][]int64{"user": {int64(b)}, "recent": {int64(b), 2}}
	if !ids {
		shapes["cands"] = []int64{int64(b), int64(c)}
	}
	return reqs, shapes
}

// CheckBatchLists checks lists, what s.PredictBatch returned for reqs, as
// CheckBatch does, and that the first two requests, of different users,
// got different lists: the model scored each row by its own user.
func CheckBatchLists(t testing.TB, s backend.Scorer, reqs []*backend.Request, lists [][]backend.Item) {
	t.Helper()
	if err := CheckBatch(context.Background(), s, reqs, lists); err != nil {
		t.Error(err)
	}
	if len(lists) > 1 && len(lists[0]) > 0 && slices.Equal(lists[0], lists[1]) {
		t.Errorf("requests 0 and 1 got the same list %v", lists[0])
	}
}
