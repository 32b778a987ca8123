package fault

import (
	"bytes"
	"encoding/json"
	"errors"
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
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return New(Invalid, "invalid_json", "unexpected data after the JSON object")
	}
	return nil
}

// jsonError maps an encoding/json error to a fault naming the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return New(Invalid, "invalid_json", "the body must be a JSON object, got JSON %s", te.Value)
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
