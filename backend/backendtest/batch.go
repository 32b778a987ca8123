package backendtest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/backend"
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
