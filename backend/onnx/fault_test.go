package onnx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/onnx/onnxgen"
)

// The first two run without the ONNX Runtime library: they check how a
// run's outcome is classified.

func TestRankNonFiniteScoreIsBadOutput(t *testing.T) {
	m := &Model{mode: modeAligned, cfg: Config{Outputs: Outputs{Scores: "scores"}}}
	tests := []struct {
		name   string
		scores []float64
		bad    bool
	}{
		{name: "finite", scores: []float64{0.5, -2}},
		{name: "NaN", scores: []float64{0.5, math.NaN()}, bad: true},
		{name: "+Inf", scores: []float64{math.Inf(1), 0.5}, bad: true},
		{name: "-Inf", scores: []float64{0.5, math.Inf(-1)}, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, err := m.rank(&backend.Request{Candidates: []string{"a", "b"}, K: 2}, &outputRow{scores: tc.scores})
			if got := errors.Is(err, backend.ErrBadOutput); got != tc.bad {
				t.Fatalf("rank = %v, %v; bad output = %v, want %v", items, err, got, tc.bad)
			}
		})
	}
}

func TestRunRefusingInputIsRejectedInput(t *testing.T) {
	tests := []struct {
		msg      string
		rejected bool
	}{
		{msg: "Got invalid dimensions for input: x for the following indices index: 1 Got: 3 Expected: 4", rejected: true},
		{msg: "Invalid rank for input: x Got: 3 Expected: 2 Please fix either the inputs/outputs or the model.", rejected: true},
		{msg: "Unexpected input data type. Actual: (tensor(float)) , expected: (tensor(int64))", rejected: true},
		{msg: "Non-zero status code returned while running Gather node. Name:'g' Status Message: indices element out of data bounds, idx=7 must be within the inclusive range [-5,4]", rejected: true},
		{msg: "Non-zero status code returned while running MatMul node. Name:'m' Status Message: out of memory"},
		{msg: "Exiting due to terminate flag being set to true."},
	}
	for _, tc := range tests {
		err := errors.New(tc.msg)
		if got := refusesInput(err); got != tc.rejected {
			t.Errorf("refusesInput(%q) = %v, want %v", tc.msg, got, tc.rejected)
		}
	}
	err := backend.RejectInput(ErrBadInput, "%v", errors.New("Got invalid dimensions for input: x"))
	if backend.Classify(err) != backend.ClassRejected || !errors.Is(err, ErrBadInput) {
		t.Errorf("refused run error %v: class %q, want %q and ErrBadInput", err, backend.Classify(err), backend.ClassRejected)
	}
}

// ONNX Runtime refusing the request's input (an index beyond a Gather's
// table) is rejected_input, with the runtime's own message.
func TestRuntimeRefusesInput(t *testing.T) {
	needRuntime(t)
	r := newRecsys(onnxgen.Aligned)
	p := plan(t, specUser, specAge, specSurf, specCand)
	m := load(t, writeModel(t, r), p, Config{})
	req := query{user: "u", age: 30, surface: "music", candidates: candidates(10, 1), k: 5}.request(t, p)
	for j := range req.Inputs {
		if req.Inputs[j].Name == "surface" {
			req.Inputs[j].Int64[0] = 99 // out of the bias table
		}
	}
	_, err := m.Predict(context.Background(), req)
	var ie *backend.InputError
	if backend.Classify(err) != backend.ClassRejected || !errors.As(err, &ie) || ie.Msg == "" {
		t.Fatalf("got %v (class %q), want rejected_input with the runtime's message", err, backend.Classify(err))
	}
}

// In a batch, a request whose input the runtime refuses is refused alone:
// the others of its run still get their rows.
func TestRefusedInputInBatch(t *testing.T) {
	needRuntime(t)
	r := newRecsys(onnxgen.Aligned)
	p := plan(t, specUser, specAge, specSurf, specCand)
	m := load(t, writeModel(t, r), p, Config{Batching: &Batching{MaxBatchSize: 16, BatchTimeout: 50 * time.Millisecond}})
	const n, bad = 6, 2
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		req := query{user: fmt.Sprintf("user-%d", i), age: 30, surface: "music", candidates: candidates(10, uint64(i)), k: 5}.request(t, p)
		if i == bad {
			for j := range req.Inputs {
				if req.Inputs[j].Name == "surface" {
					req.Inputs[j].Int64[0] = 99
				}
			}
		}
		wg.Go(func() { _, errs[i] = m.Predict(context.Background(), req) })
	}
	wg.Wait()
	for i, err := range errs {
		if (i == bad) != (backend.Classify(err) == backend.ClassRejected) || (i != bad && err != nil) {
			t.Errorf("request %d: %v", i, err)
		}
	}
}
