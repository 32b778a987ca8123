package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// DecodeJSON decodes one JSON object into v, rejecting unknown fields and
// trailing data, and turns decoder errors into field errors.
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return New(Invalid, "invalid_json", "request body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return New(Invalid, "invalid_json", "unexpected data after the JSON object")
	}
	return nil
}

// jsonError maps an encoding/json error in body to a fault naming the field.
func jsonError(body []byte, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return New(Invalid, "invalid_json", "the body must be a JSON object, got JSON %s", te.Value)
		}
		if num, ok := strings.CutPrefix(te.Value, "number "); ok && te.Type != nil &&
			(te.Type.Kind() == reflect.Float64 || te.Type.Kind() == reflect.Float32) {
			// A number too large for a float (1e400): it would decode as
			// ±Inf. Name the value itself, which may be deep inside a map
			// (features.age) where te.Field stops at the map.
			field := te.Field
			if p := valuePath(body, te.Offset); strings.HasPrefix(p, field) {
				field = p
			}
			return Field(field, "invalid_number", "the number %s is out of range (it is not a finite %s)", clip(num), te.Type.Kind())
		}
		return Field(te.Field, "invalid_type", "expected %s, got JSON %s", kindName(te.Type), te.Value)
	case errors.As(err, &se):
		return New(Invalid, "invalid_json", "malformed JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Field(f, "unknown_field", "unknown field %q", f)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return New(Invalid, "invalid_json", "malformed JSON: unexpected end of input")
	}
	return New(Invalid, "invalid_json", "malformed JSON: %v", err)
}

// kindName describes a Go type in JSON's words.
func kindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return kindName(t.Elem())
	}
	return "another type"
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// valuePath returns the path (a.b[2].c) of the last JSON number in body
// that ends at or before byte offset off (encoding/json reports an error
// about a number a little past its end), or "" when there is none. It is
// only called for an error, so its cost does not matter.
func valuePath(body []byte, off int64) string {
	type frame struct {
		obj       bool
		key       string
		idx       int
		expectKey bool
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for i, f := range stack {
			if f.obj {
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			} else {
				fmt.Fprintf(&b, "[%d]", f.idx)
			}
		}
		return b.String()
	}
	done := func() { // a value of the innermost container ended
		if n := len(stack); n > 0 {
			if stack[n-1].obj {
				stack[n-1].expectKey = true
			} else {
				stack[n-1].idx++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	last := ""
	for {
		tok, err := dec.Token()
		if err != nil || dec.InputOffset() > off {
			return last
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{obj: true, expectKey: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
			continue
		case string:
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].expectKey {
				stack[n-1].key, stack[n-1].expectKey = t, false
				continue
			}
		}
		if _, ok := tok.(json.Number); ok {
			last = path()
		}
		done()
	}
}
