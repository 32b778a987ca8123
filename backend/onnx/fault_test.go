package onnx

import (
	"errors"
	"math"
	"testing"

	"github.com/modelgate/modelgate/backend"
)

// These run without the ONNX Runtime library: they check how a run's
// outcome is classified, not the runtime itself.

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
