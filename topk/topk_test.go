package topk

import (
	"errors"
	"testing"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/predtoken"
)

func TestCheck(t *testing.T) {
	const strict = "must be between 1 and 1000"
	const lenient = "must be between 1 and 1000 (0 means the default, 10)"
	tests := []struct {
		k             int
		zeroIsDefault bool
		want          string // "" for accepted, else the message
	}{
		{k: 1, want: ""},
		{k: Max, want: ""},
		{k: 0, want: strict},
		{k: -1, want: strict},
		{k: Max + 1, want: strict},
		{k: 0, zeroIsDefault: true, want: ""},
		{k: 1, zeroIsDefault: true, want: ""},
		{k: Max, zeroIsDefault: true, want: ""},
		{k: -1, zeroIsDefault: true, want: lenient},
		{k: Max + 1, zeroIsDefault: true, want: lenient},
	}
	for _, tc := range tests {
		err := Check(tc.k, tc.zeroIsDefault)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Check(%d, %v) = %v, want nil", tc.k, tc.zeroIsDefault, err)
			}
			continue
		}
		var f *fault.Error
		if !errors.As(err, &f) || f.Code != "invalid_k" || f.Field != "k" || f.Message != tc.want || f.Kind != fault.Invalid {
			t.Errorf("Check(%d, %v) = %#v, want invalid_k on k: %q", tc.k, tc.zeroIsDefault, err, tc.want)
		}
	}
}

func TestOrDefault(t *testing.T) {
	for _, tc := range []struct{ k, want int }{{0, Default}, {1, 1}, {Max, Max}} {
		if got := OrDefault(tc.k); got != tc.want {
			t.Errorf("OrDefault(%d) = %d, want %d", tc.k, got, tc.want)
		}
	}
}

// Every item a prediction can return fits in its token's item count, so
// feedback can accept an event for each of them.
func TestMaxFitsToken(t *testing.T) {
	if Max > predtoken.MaxItems {
		t.Fatalf("Max %d exceeds predtoken.MaxItems %d", Max, predtoken.MaxItems)
	}
	if Default < Min || Default > Max || Min < 1 {
		t.Fatalf("Default %d is outside %d..%d", Default, Min, Max)
	}
}
