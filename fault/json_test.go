package fault

import (
	"strings"
	"testing"
)

func TestDecodeJSONErrors(t *testing.T) {
	type body struct {
		Features map[string]any `json:"features"`
		K        *int           `json:"k"`
		Weights  []float64      `json:"weights"`
	}
	tests := []struct {
		name, body, code, field, msg string
	}{
		{"huge number in a map", `{"features": {"name": "x", "age": 1e400}}`, "invalid_number", "features.age", "1e400 is out of range"},
		{"negative huge number", `{"features": {"age": -2E+999, "b": 1}}`, "invalid_number", "features.age", "-2E+999"},
		{"huge number in a list in a map", `{"features": {"a": {"b": 1}, "x": [1, [2, 3e999]]}}`, "invalid_number", "features.x[1][1]", "3e999"},
		{"huge number after nested values", `{"features": {"l": [{"q": [1, 2]}, "s"], "z": {"y": 1e500}}}`, "invalid_number", "features.z.y", "1e500"},
		{"huge number in a float slice", `{"weights": [0.5, 1e400]}`, "invalid_number", "weights[1]", "1e400"},
		{"huge integer is a type error", `{"k": 1e400}`, "invalid_type", "k", "expected an integer"},
		{"string for an integer", `{"k": "3"}`, "invalid_type", "k", "expected an integer"},
		{"unknown field", `{"kk": 3}`, "unknown_field", "kk", "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v body
			f := As(DecodeJSON([]byte(tc.body), &v))
			if f == nil || f.Code != tc.code || f.Field != tc.field || f.Kind != Invalid || !strings.Contains(f.Message, tc.msg) {
				t.Fatalf("DecodeJSON(%s) = %+v; want code %s, field %s, message containing %q", tc.body, f, tc.code, tc.field, tc.msg)
			}
		})
	}
}

func TestValuePath(t *testing.T) {
	body := []byte(`{"a": {"b": [10, {"c": 20}], "d": "x"}, "e": 30}`)
	for _, tc := range []struct {
		after string // the offset: just after this text
		want  string
	}{{"10", "a.b[0]"}, {"20", "a.b[1].c"}, {"20}]", "a.b[1].c"}, {`"x"`, "a.b[1].c"}, {"30", "e"}, {"30}", "e"}, {`{"a"`, ""}} {
		end := strings.Index(string(body), tc.after) + len(tc.after)
		if got := valuePath(body, int64(end)); got != tc.want {
			t.Errorf("valuePath just after %s = %q, want %q", tc.after, got, tc.want)
		}
	}
}
