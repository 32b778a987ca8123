package redisstore

import (
	"context"
	"slices"
	"testing"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
)

// Two replicas add to the same arm's sums; a batch Redis did not take
// during an outage is kept and added once Redis is back; a batch retried
// after it was applied is not added again.
func TestLinearSumsAcrossReplicasAndOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AOF: true, AppendFsync: redistest.FsyncAlways})
	ctx := context.Background()
	r1 := openStore(t, srv.URL(), onlineOpts())
	r2 := openStore(t, srv.URL(), onlineOpts())
	k := counters.LinKey{Endpoint: "home", Arm: "mf@1", Layout: 42}
	one := []float64{1, 1, 1, 0, 1, 0, 0} // d = 2, x = (1, 0), r = 1
	two := []float64{1, 0, 0, 0, 1, 1, 1} // x = (1, 1), r = 0
	if err := r1.AddLinear(ctx, map[counters.LinKey][]float64{k: one}); err != nil {
		t.Fatal(err)
	}
	if err := r2.AddLinear(ctx, map[counters.LinKey][]float64{k: two}); err != nil {
		t.Fatal(err)
	}
	want := []float64{2, 1, 1, 0, 2, 1, 1}
	for i, r := range []*Store{r1, r2} {
		got, err := r.LoadLinear(ctx)
		if err != nil || !slices.Equal(got[k], want) {
			t.Fatalf("replica %d loads %v, %v; want %v", i+1, got[k], err, want)
		}
	}

	srv.Stop()
	if err := r1.AddLinear(ctx, map[counters.LinKey][]float64{k: one}); err == nil {
		t.Fatal("Redis down: want an error")
	}
	srv.Restart()
	if err := r1.AddLinear(ctx, nil); err != nil { // the kept batch goes now
		t.Fatal(err)
	}
	// Retrying the batch that was applied changes nothing.
	b := linearBatch{id: "fixed", endpoint: "home", deltas: map[counters.LinKey][]float64{k: two}}
	for range 2 {
		if err := r2.applyLinear(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r2.LoadLinear(ctx)
	if want := []float64{4, 2, 2, 0, 4, 2, 2}; err != nil || !slices.Equal(got[k], want) {
		t.Fatalf("after the outage and a retried batch: %v, %v; want %v", got[k], err, want)
	}
}
