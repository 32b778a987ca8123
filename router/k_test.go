package router

import (
	"errors"
	"testing"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/topk"
)

// Validate applies topk's rule to a Request's K, where 0 asks for the
// default.
func TestValidateK(t *testing.T) {
	for _, k := range []int{-1, topk.Max + 1} {
		var f *fault.Error
		if err := Validate(&Request{Endpoint: "home", UserID: "u", K: k}); !errors.As(err, &f) || f.Code != "invalid_k" || f.Field != "k" {
			t.Errorf("Validate(K = %d) = %v, want invalid_k", k, err)
		}
	}
	for _, k := range []int{0, 1, topk.Max} {
		if err := Validate(&Request{Endpoint: "home", UserID: "u", K: k}); err != nil {
			t.Errorf("Validate refused K = %d: %v", k, err)
		}
	}
}
