package fault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// strict are the options of every request body's decoding. The rest of the
// strictness is json v2's default: names match exactly (User_ID is not
// user_id), a name repeated in any object, however deep (in a map, in a
// free-form value, in a json.RawMessage), is an error, strings are valid
// UTF-8, and nothing but white space follows the value.
var strict = json.RejectUnknownMembers(true)

// DecodeJSON decodes one JSON value (an object, for a struct v) into v,
// strictly: field names match exactly, a repeated key in any object is an
// error, unknown fields and trailing data are errors. Every error is an
// Invalid *Error naming, when one value is at fault, its path in Field
// (context.surface, events[2].type) and not again in Message.
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return New(Invalid, "invalid_json", "request body is empty")
	}
	if err := json.Unmarshal(body, v, strict); err != nil {
		return jsonError(body, err)
	}
	return nil
}

// PeekJSON decodes body into v with DecodeJSON's rules but for unknown
// fields, which it skips, and reports whether that worked: a first look at a
// body (which backend type it names) before DecodeJSON judges all of it.
func PeekJSON(body []byte, v any) bool {
	return json.Unmarshal(body, v) == nil
}

// jsonError maps a json v2 error in body to a fault naming the field.
func jsonError(body []byte, err error) error {
	var se *json.SemanticError
	var sx *jsontext.SyntacticError
	switch {
	case errors.As(err, &sx):
		return syntacticError(body, sx)
	case errors.As(err, &se):
		return semanticError(body, se)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return New(Invalid, "invalid_json", "malformed JSON: unexpected end of input")
	}
	return New(Invalid, "invalid_json", "malformed JSON: %v", trimPrefix(err))
}

func semanticError(body []byte, se *json.SemanticError) error {
	if se.JSONPointer == "" {
		return New(Invalid, "invalid_json", "the body must be a JSON object, got JSON %s", kindWord(se.JSONKind))
	}
	field := fieldPath(body, se.JSONPointer)
	if errors.Is(se.Err, json.ErrUnknownName) {
		name := se.JSONPointer.LastToken()
		if alt := foldMatch(se.GoType, name); alt != "" {
			return Field(field, "unknown_field", "unknown field; did you mean %q? (names are case-sensitive)", alt)
		}
		return Field(field, "unknown_field", "unknown field")
	}
	t := se.GoType
	if se.JSONKind == '0' && t != nil && (t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32) {
		// A number too large for a float (1e400) would decode as ±Inf.
		return Field(field, "invalid_number", "the number %s is out of range (it is not a finite %s)", clip(numberAt(body, se.ByteOffset)), t.Kind())
	}
	got := "JSON " + kindWord(se.JSONKind)
	if se.JSONKind == '0' {
		got += " " + clip(numberAt(body, se.ByteOffset))
	}
	return Field(field, "invalid_type", "expected %s, got %s", kindName(t), got)
}

func syntacticError(body []byte, sx *jsontext.SyntacticError) error {
	if errors.Is(sx.Err, jsontext.ErrDuplicateName) {
		return Field(fieldPath(body, sx.JSONPointer), "invalid_json", "repeated key: a key may appear only once in an object")
	}
	if errors.Is(sx.Err, io.ErrUnexpectedEOF) {
		return New(Invalid, "invalid_json", "malformed JSON: unexpected end of input")
	}
	if sx.JSONPointer == "" && endOfValue(body) <= sx.ByteOffset {
		return New(Invalid, "invalid_json", "unexpected data after the JSON object")
	}
	return New(Invalid, "invalid_json", "malformed JSON at byte %d: %v", sx.ByteOffset, trimPrefix(sx.Err))
}

func trimPrefix(err error) string {
	s := err.Error()
	for _, p := range []string{"jsontext: ", "json: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// endOfValue is the offset just past the first JSON value of body, or
// len(body)+1 when body does not start with a whole value.
func endOfValue(body []byte) int64 {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if dec.SkipValue() != nil {
		return int64(len(body)) + 1
	}
	return dec.InputOffset()
}

// fieldPath turns a JSON Pointer into body (/events/2/type) into the path
// the errors name (events[2].type): a token is an index when the value it
// selects from is an array, and a key otherwise. It reads body only up to
// the pointed value, and only for an error. A pointer body does not hold
// (a duplicate's, or one past a syntax error) is read as keys from where
// body stops.
func fieldPath(body []byte, ptr jsontext.Pointer) string {
	var b strings.Builder
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	follow := true
	for tok := range ptr.Tokens() {
		if follow && dec.PeekKind() == '[' {
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 {
				fmt.Fprintf(&b, "[%d]", i)
				follow = skipTo(dec, i)
				continue
			}
		}
		if follow {
			follow = dec.PeekKind() == '{' && memberTo(dec, tok)
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// skipTo moves dec, before an array, to the array's i-th element.
func skipTo(dec *jsontext.Decoder, i int) bool {
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	for ; i > 0; i-- {
		if dec.PeekKind() == ']' || dec.SkipValue() != nil {
			return false
		}
	}
	return dec.PeekKind() != ']'
}

// memberTo moves dec, before an object, to the value of its member name.
func memberTo(dec *jsontext.Decoder, name string) bool {
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		if tok.String() == name {
			return true
		}
		if dec.SkipValue() != nil {
			return false
		}
	}
	return false
}

// numberAt is the JSON number starting at or after byte off of body.
func numberAt(body []byte, off int64) string {
	if off < 0 || off > int64(len(body)) {
		return ""
	}
	s := bytes.TrimLeft(body[off:], " \t\r\n:,[")
	end := bytes.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune("+-.0123456789eE", r) })
	if end < 0 {
		end = len(s)
	}
	return string(s[:end])
}

// foldMatch returns the JSON name of a field of struct type t that equals
// name but for case, or "".
func foldMatch(t reflect.Type, name string) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if n == "-" {
			continue
		}
		if n == "" {
			n = f.Name
		}
		if n != name && strings.EqualFold(n, name) {
			return n
		}
	}
	return ""
}

// kindWord names a JSON kind.
func kindWord(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
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
