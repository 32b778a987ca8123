package onnx

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/featurizer"
)

// The bundled demo's models (examples/demo): nn@1, an onnx/v1 ranker over
// the 1,000-item catalogue (16-dimensional vectors, a hash-bucket lookup,
// MatMul, tanh), and mf@2, an embedding/v1 model of the same size.
var (
	demoNN = filepath.Join("..", "..", "examples", "demo", "models", "nn", "1")
	demoMF = filepath.Join("..", "..", "examples", "demo", "models", "mf", "2")
)

const demoNNSpec = `{"inputs": {"user": {"from": "user_id", "transform": "hash_bucket", "buckets": 1000000, "dtype": "int64"}}}`

// demoRequests are top-10 requests for the 400 demo users, featurized once
// so that the benchmarks time the backend alone.
func demoRequests(b *testing.B, spec string) []*backend.Request {
	b.Helper()
	var p *featurizer.Plan
	if spec != "" {
		var err error
		if p, err = featurizer.Parse([]byte(spec)); err != nil {
			b.Fatal(err)
		}
	}
	reqs := make([]*backend.Request, 400)
	for i := range reqs {
		user := fmt.Sprintf("u%d", i)
		if p == nil {
			reqs[i] = &backend.Request{K: 10, Inputs: []featurizer.Tensor{
				{Name: "user_id", DType: featurizer.String, Shape: []int64{1}, String: []string{user}}}}
			continue
		}
		ins, err := p.Build(&featurizer.Request{UserID: user})
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = &backend.Request{K: 10, Inputs: ins}
	}
	return reqs
}

type predictor interface {
	Predict(context.Context, *backend.Request) ([]backend.Item, error)
}

func demoONNX(b *testing.B, batching *Batching) predictor {
	b.Helper()
	needRuntime(b)
	plan, err := featurizer.Parse([]byte(demoNNSpec))
	if err != nil {
		b.Fatal(err)
	}
	m, err := Load(demoNN, Config{Inputs: plan.Inputs(), Outputs: Outputs{Scores: "scores"}, Batching: batching})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func demoEmbedded(b *testing.B) predictor {
	b.Helper()
	m, err := embedded.Load(demoMF)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkPredict is one top-10 over the demo catalogue, one caller:
// the onnx backend against the embedded one on a model of the same size.
//
//	go test ./backend/onnx -run '^$' -bench 'BenchmarkPredict$' -benchmem
func BenchmarkPredict(b *testing.B) {
	b.Run("onnx", func(b *testing.B) { benchSerial(b, demoONNX(b, nil), demoRequests(b, demoNNSpec)) })
	b.Run("embedded", func(b *testing.B) { benchSerial(b, demoEmbedded(b), demoRequests(b, "")) })
}

func benchSerial(b *testing.B, m predictor, reqs []*backend.Request) {
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := m.Predict(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPredictParallel is throughput under concurrent callers, the onnx
// backend with batching off and on, and the embedded one. RunParallel runs
// callers×GOMAXPROCS goroutines: with -cpu 1, "callers" is exact.
//
//	go test ./backend/onnx -run '^$' -bench 'BenchmarkPredictParallel' -cpu 1 -benchmem
func BenchmarkPredictParallel(b *testing.B) {
	for _, callers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("onnx/batching=off/callers=%d", callers), func(b *testing.B) {
			benchParallel(b, demoONNX(b, nil), demoRequests(b, demoNNSpec), callers)
		})
		b.Run(fmt.Sprintf("onnx/batching=on/callers=%d", callers), func(b *testing.B) {
			m := demoONNX(b, &Batching{MaxBatchSize: 16, BatchTimeout: 200 * time.Microsecond})
			benchParallel(b, m, demoRequests(b, demoNNSpec), callers)
		})
		b.Run(fmt.Sprintf("embedded/callers=%d", callers), func(b *testing.B) {
			benchParallel(b, demoEmbedded(b), demoRequests(b, ""), callers)
		})
	}
}

func benchParallel(b *testing.B, m predictor, reqs []*backend.Request, callers int) {
	ctx := context.Background()
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(callers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if _, err := m.Predict(ctx, reqs[i%uint64(len(reqs))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkPredictBatch is 64 demo users top-10 in one PredictBatch (one
// session run), against 64 Predict calls.
//
//	go test ./backend/onnx -run '^$' -bench 'BenchmarkPredictBatch' -benchmem
func BenchmarkPredictBatch(b *testing.B) {
	m := demoONNX(b, nil).(*Model)
	reqs := demoRequests(b, demoNNSpec)[:64]
	backendtest.BenchBatch(b, m, reqs)
}
