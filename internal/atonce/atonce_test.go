package atonce

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestRun(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	tests := []struct {
		name string
		errs []error
		want []error
	}{
		{"none", nil, nil},
		{"all succeed", []error{nil, nil, nil}, nil},
		{"one fails", []error{nil, errA, nil}, []error{errA}},
		{"two fail", []error{errA, nil, errB}, []error{errA, errB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			fns := make([]func() error, len(tt.errs))
			for i, err := range tt.errs {
				fns[i] = func() error { calls.Add(1); return err }
			}
			err := Run(fns...)
			if int(calls.Load()) != len(fns) {
				t.Fatalf("%d calls, want %d", calls.Load(), len(fns))
			}
			if (err == nil) != (len(tt.want) == 0) {
				t.Fatalf("Run = %v, want errors %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Run = %v, does not hold %v", err, w)
				}
			}
		})
	}
}
