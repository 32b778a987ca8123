package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// body is shaped like the request bodies: optional scalars, a string map,
// a free-form map, lists and a nested object.
type body struct {
	UserID   *string           `json:"user_id"`
	Context  map[string]string `json:"context"`
	Features map[string]any    `json:"features"`
	K        *int              `json:"k"`
	Weights  []float64         `json:"weights"`
	Events   []event           `json:"events"`
	Policy   *struct {
		Type  string `json:"type"`
		Prior *struct {
			Alpha float64 `json:"alpha"`
		} `json:"prior"`
	} `json:"policy"`
	Raw json.RawMessage `json:"raw"`
}

type event struct {
	Type   string `json:"type"`
	ItemID string `json:"item_id"`
}

func TestDecodeJSONErrors(t *testing.T) {
	tests := []struct {
		name, body, code, field, msg string
	}{
		{"huge number in a map", `{"features": {"name": "x", "age": 1e400}}`, "invalid_number", "features.age", "1e400 is out of range"},
		{"negative huge number", `{"features": {"age": -2E+999, "b": 1}}`, "invalid_number", "features.age", "-2E+999"},
		{"huge number in a list in a map", `{"features": {"a": {"b": 1}, "x": [1, [2, 3e999]]}}`, "invalid_number", "features.x[1][1]", "3e999"},
		{"huge number after nested values", `{"features": {"l": [{"q": [1, 2]}, "s"], "z": {"y": 1e500}}}`, "invalid_number", "features.z.y", "1e500"},
		{"huge number in a float slice", `{"weights": [0.5, 1e400]}`, "invalid_number", "weights[1]", "1e400"},
		{"huge integer is a type error", `{"k": 1e400}`, "invalid_type", "k", "expected an integer, got JSON number 1e400"},
		{"fraction for an integer", `{"k": 2.5}`, "invalid_type", "k", "expected an integer, got JSON number 2.5"},
		{"string for an integer", `{"k": "3"}`, "invalid_type", "k", "expected an integer, got JSON string"},
		{"number in a string map", `{"context": {"surface": 3}}`, "invalid_type", "context.surface", "expected a string, got JSON number 3"},
		{"object in a string map", `{"context": {"a": "x", "surface": {}}}`, "invalid_type", "context.surface", "expected a string, got JSON object"},
		{"wrong type in a list of objects", `{"events": [{"type": "click"}, {"type": 1}]}`, "invalid_type", "events[1].type", "expected a string"},
		{"numeric key in a map is a key", `{"features": {"0": [1, {"1": 1e999}]}}`, "invalid_number", "features.0[1].1", "1e999"},
		{"unknown field", `{"kk": 3}`, "unknown_field", "kk", "unknown field"},
		{"wrong case is unknown", `{"User_ID": "a"}`, "unknown_field", "User_ID", `did you mean "user_id"?`},
		{"wrong case in a nested object", `{"policy": {"Type": "uniform"}}`, "unknown_field", "policy.Type", `did you mean "type"?`},
		{"unknown field deep", `{"policy": {"prior": {"alpha": 1, "gamma": 2}}}`, "unknown_field", "policy.prior.gamma", "unknown field"},
		{"unknown field in a list", `{"events": [{"type": "click"}, {"typo": "x"}]}`, "unknown_field", "events[1].typo", "unknown field"},
		{"repeated key", `{"user_id": "a", "user_id": "b"}`, "invalid_json", "user_id", "repeated key"},
		{"repeated key in context", `{"context": {"surface": "a", "surface": "b"}}`, "invalid_json", "context.surface", "repeated key"},
		{"repeated key deep in features", `{"features": {"x": [{"a": 1}, {"a": 1, "a": 2}]}}`, "invalid_json", "features.x[1].a", "repeated key"},
		{"repeated key in a raw value", `{"raw": {"inputs": {}, "inputs": {}}}`, "invalid_json", "raw.inputs", "repeated key"},
		{"repeated key in a nested struct", `{"policy": {"type": "a", "type": "b"}}`, "invalid_json", "policy.type", "repeated key"},
		{"empty", " \n", "invalid_json", "", "empty"},
		{"array", `[1]`, "invalid_json", "", "must be a JSON object, got JSON array"},
		{"null", `null`, "", "", ""},
		{"trailing data", `{"k": 1} {"k": 2}`, "invalid_json", "", "unexpected data after the JSON object"},
		{"trailing garbage", `{"k": 1}x`, "invalid_json", "", "unexpected data after the JSON object"},
		{"cut short", `{"k": 1`, "invalid_json", "", "unexpected end of input"},
		{"trailing comma", `{"k": 1,}`, "invalid_json", "", "malformed JSON at byte"},
		{"invalid UTF-8", "{\"user_id\": \"a\xff\"}", "invalid_json", "", "UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v body
			err := DecodeJSON([]byte(tc.body), &v)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("DecodeJSON(%s) = %v, want no error", tc.body, err)
				}
				return
			}
			f := As(err)
			if f == nil || f.Code != tc.code || f.Field != tc.field || f.Kind != Invalid || !strings.Contains(f.Message, tc.msg) {
				t.Fatalf("DecodeJSON(%s) = %#v; want code %s, field %q, message containing %q", tc.body, err, tc.code, tc.field, tc.msg)
			}
			if startsWithField(f.Message, f.Field) {
				t.Errorf("message %q repeats the field %q", f.Message, f.Field)
			}
		})
	}
}

// A body using every field with its exact name decodes as encoding/json
// decodes it.
func TestDecodeJSONValid(t *testing.T) {
	in := `{"user_id": "u1", "context": {"surface": "music", "Surface": "other"}, "features": {"a": [1, {"b": null}], "A": true},
		"k": 3, "weights": [0.5, -1e300], "events": [{"type": "click", "item_id": "i1"}], "policy": {"type": "uniform", "prior": {"alpha": 2}},
		"raw": {"inputs": {"x": {"from": "user_id"}}}}`
	var got, want body
	if err := DecodeJSON([]byte(in), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestFieldPath(t *testing.T) {
	doc := []byte(`{"a": {"b": [10, {"c": 20}], "0": [{"x/y": 1}]}, "e": 30}`)
	for _, tc := range []struct {
		ptr  jsontext.Pointer
		want string
	}{
		{"/a/b/0", "a.b[0]"}, {"/a/b/1/c", "a.b[1].c"}, {"/e", "e"}, {"", ""},
		{"/a/0/0/x~1y", "a.0[0].x/y"},
		{"/a/b/7/c", "a.b[7].c"},        // past the array's end: still an index
		{"/missing/0/z", "missing.0.z"}, // not in the body: keys
	} {
		if got := fieldPath(doc, tc.ptr); got != tc.want {
			t.Errorf("fieldPath(%s) = %q, want %q", tc.ptr, got, tc.want)
		}
	}
}

// startsWithField reports whether msg begins by naming field (or its last
// element), as in "k: k must be…" or "backend.tls: tls applies…".
func startsWithField(msg, field string) bool {
	if field == "" {
		return false
	}
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer(".", " ", "_", " ").Replace(s)) }
	m := norm(msg)
	last := field
	for strings.HasSuffix(last, "]") && strings.Contains(last, "[") {
		last = last[:strings.LastIndexByte(last, '[')]
	}
	last = last[strings.LastIndexByte(last, '.')+1:]
	for _, f := range []string{field, last} {
		f = norm(f)
		if f == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(m, f); ok && (rest == "" || strings.ContainsAny(rest[:1], " :s")) {
			return true
		}
	}
	return false
}

func TestStartsWithField(t *testing.T) {
	for _, tc := range []struct {
		msg, field string
		want       bool
	}{
		{"k must be between 1 and 1000", "k", true},
		{"must be between 1 and 1000", "k", false},
		{"tls applies to remote backends only", "backend.tls", true},
		{"backend type \"x\" is not available", "backend.type", true},
		{"versions are 1-64 of A-Z", "version", true},
		{"keys are at most 128 bytes", "context.surface", false},
		{"unknown field", "kk", false},
		{"an embedded backend needs a path", "backend.path", false},
		{"at most 64 arms", "arms[3]", false},
		{"arms must be unique", "arms[3]", true},
		{"type must be a string", "events[2].type", true},
	} {
		if got := startsWithField(tc.msg, tc.field); got != tc.want {
			t.Errorf("startsWithField(%q, %q) = %v", tc.msg, tc.field, got)
		}
	}
}

// FuzzDecodeJSON checks the strict decoder against encoding/json and an
// independent duplicate-key scan: it never panics, every error is an
// Invalid fault whose message does not repeat its field, a body it accepts
// has no repeated key and decodes exactly as encoding/json decodes it, and a
// body encoding/json finds malformed it rejects too.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"user_id": "u42", "context": {"surface": "music"}, "features": {"recent_items": ["i3","i9"], "age": 31}, "k": 10}`,
		`{"user_id": "a", "user_id": "b"}`, `{"User_ID": "a"}`, `{"context": {"s": "a", "s": "b"}}`,
		`{"features": {"x": [{"a": 1, "a": 2}]}}`, `{"events": [{"type": "click", "item_id": "i"}]}`,
		`{"policy": {"type": "t", "prior": {"alpha": 1e400}}}`, `{"raw": {"a": [1, {"b": 2, "b": 3}]}}`,
		`{"k": 1} x`, `[]`, `null`, `{"weights": [1e999]}`, "{\"user_id\": \"\xff\"}", `{"user_id": "\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var got body
		err := DecodeJSON(in, &got)
		v1 := json.NewDecoder(bytes.NewReader(in))
		v1.DisallowUnknownFields()
		var want body
		v1err := v1.Decode(&want)
		if v1err == nil {
			if _, e := v1.Token(); e != io.EOF {
				v1err = errors.New("trailing data")
			}
		}
		if err != nil {
			fe := As(err)
			if fe == nil || fe.Kind != Invalid || fe.Code == "" || fe.Message == "" {
				t.Fatalf("DecodeJSON(%q) = %#v, not an Invalid fault", in, err)
			}
			if startsWithField(fe.Message, fe.Field) {
				t.Fatalf("DecodeJSON(%q): message %q repeats the field %q", in, fe.Message, fe.Field)
			}
			return
		}
		if dup := repeatedKey(in); dup != "" {
			t.Fatalf("DecodeJSON(%q) accepted the repeated key %q", in, dup)
		}
		if v1err != nil {
			t.Fatalf("DecodeJSON(%q) accepted what encoding/json rejects: %v", in, v1err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeJSON(%q) = %+v, encoding/json decodes %+v", in, got, want)
		}
	})
}

// repeatedKey returns a key that appears twice in one object of a valid
// JSON document, found with encoding/json's tokenizer, or "".
func repeatedKey(doc []byte) string {
	dec := json.NewDecoder(bytes.NewReader(doc))
	type frame struct {
		keys      map[string]bool
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		top := (*frame)(nil)
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.keys != nil {
					top.expectKey = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, expectKey: true})
			case '[':
				if top != nil && top.keys != nil {
					top.expectKey = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.keys != nil && top.expectKey {
				if top.keys[t] {
					return t
				}
				top.keys[t], top.expectKey = true, false
				continue
			}
		}
		if top != nil && top.keys != nil {
			top.expectKey = true
		}
	}
}

// BenchmarkAs is the router's check, after every backend call, whether an
// error is the request's fault: mostly on a nil error.
func BenchmarkAs(b *testing.B) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"wrapped", fmt.Errorf("call: %w", Field("k", "bad_k", "k is out of range"))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if (As(tc.err) == nil) != (tc.err == nil) {
					b.Fatal("wrong result")
				}
			}
		})
	}
}
