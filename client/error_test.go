package client_test

import (
	"testing"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/client"
)

// An API error reads "status code: field: message", naming the field once,
// as the command line prints it.
func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  client.Error
		want string
	}{
		{client.Error{Status: 400, ErrorDetail: api.ErrorDetail{Code: "invalid_k", Message: "must be between 1 and 1000", Field: "k"}},
			"400 invalid_k: k: must be between 1 and 1000"},
		{client.Error{Status: 400, ErrorDetail: api.ErrorDetail{Code: "unknown_field", Message: `unknown field; did you mean "arms"? (names are case-sensitive)`, Field: "Arms"}},
			`400 unknown_field: Arms: unknown field; did you mean "arms"? (names are case-sensitive)`},
		{client.Error{Status: 404, ErrorDetail: api.ErrorDetail{Code: "model_not_found", Message: "model nope is not registered"}},
			"404 model_not_found: model nope is not registered"},
		{client.Error{Status: 502, Body: "upstream gone"}, "502 Bad Gateway: upstream gone"},
		{client.Error{ErrorDetail: api.ErrorDetail{Code: "key_not_found", Message: `no key named "x"`}}, `key_not_found: no key named "x"`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
