package router

import (
	"errors"
	"testing"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/predtoken"
)

// CheckK is the one rule for k, used by Validate and both transports.
func TestCheckK(t *testing.T) {
	const strict = "must be between 1 and 1000"
	const lenient = "must be between 1 and 1000 (0 means the default, 10)"
	tests := []struct {
		k             int
		zeroIsDefault bool
		want          string // "" for accepted, else the message
	}{
		{k: 1, want: ""},
		{k: MaxK, want: ""},
		{k: 0, want: strict},
		{k: -1, want: strict},
		{k: MaxK + 1, want: strict},
		{k: 0, zeroIsDefault: true, want: ""},
		{k: 1, zeroIsDefault: true, want: ""},
		{k: MaxK, zeroIsDefault: true, want: ""},
		{k: -1, zeroIsDefault: true, want: lenient},
		{k: MaxK + 1, zeroIsDefault: true, want: lenient},
	}
	for _, tc := range tests {
		err := CheckK(tc.k, tc.zeroIsDefault)
		if tc.want == "" {
			if err != nil {
				t.Errorf("CheckK(%d, %v) = %v, want nil", tc.k, tc.zeroIsDefault, err)
			}
			continue
		}
		var f *fault.Error
		if !errors.As(err, &f) || f.Code != "invalid_k" || f.Field != "k" || f.Message != tc.want {
			t.Errorf("CheckK(%d, %v) = %#v, want invalid_k on k: %q", tc.k, tc.zeroIsDefault, err, tc.want)
		}
	}
	// A Request's K of 0 asks for DefaultK; Validate applies the same rule.
	for _, k := range []int{-1, MaxK + 1} {
		var f *fault.Error
		if err := Validate(&Request{Endpoint: "home", UserID: "u", K: k}); !errors.As(err, &f) || f.Code != "invalid_k" {
			t.Errorf("Validate(K = %d) = %v, want invalid_k", k, err)
		}
	}
	if err := Validate(&Request{Endpoint: "home", UserID: "u"}); err != nil {
		t.Errorf("Validate refused K = 0 (the default): %v", err)
	}
}

// Every item a prediction can return fits in its token's item count, so
// feedback can accept an event for each of them.
func TestMaxKFitsToken(t *testing.T) {
	if MaxK > predtoken.MaxItems {
		t.Fatalf("MaxK %d exceeds predtoken.MaxItems %d", MaxK, predtoken.MaxItems)
	}
	if DefaultK < 1 || DefaultK > MaxK {
		t.Fatalf("DefaultK %d is outside 1..MaxK", DefaultK)
	}
}
