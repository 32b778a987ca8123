package redislist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/modelgate/modelgate/backend"
)

// Limits of a stored JSON list. A value past either is a malformed stored
// value (bad_output), so a runaway batch job cannot make one request read
// or decode without bound.
const (
	// MaxJSONBytes is the largest JSON value read: the script compares
	// its length first and does not send a longer one.
	MaxJSONBytes = 1 << 20
	// MaxJSONItems is the most entries a JSON list may hold.
	MaxJSONItems = 10_000
	// maxIDLen bounds one item id, in bytes.
	maxIDLen = 1024
)

// decodeList decodes a stored JSON list, strictly: an array of objects
// with exactly the members "id" (a non-empty string) and "score" (a
// finite number), each once, and nothing after the array. Any other value
// is an error wrapping backend.ErrBadOutput that says what is wrong.
func decodeList(raw []byte) ([]backend.Item, error) {
	if len(raw) > MaxJSONBytes {
		return nil, badValue("%d bytes, more than the %d a list may take", len(raw), MaxJSONBytes)
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.ReadToken(); err != nil {
		return nil, badValue("%v", err)
	} else if tok.Kind() != '[' {
		return nil, badValue("not a JSON array")
	}
	var items []backend.Item
	for dec.PeekKind() != ']' {
		if len(items) == MaxJSONItems {
			return nil, badValue("more than %d entries", MaxJSONItems)
		}
		it, err := decodeEntry(dec)
		if err != nil {
			return nil, badValue("entry %d: %v", len(items), err)
		}
		items = append(items, it)
	}
	if _, err := dec.ReadToken(); err != nil { // ']', or the syntax error PeekKind hid
		return nil, badValue("%v", err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, badValue("data after the array")
	}
	if items == nil {
		items = []backend.Item{}
	}
	return items, nil
}

// decodeEntry reads one {"id": …, "score": …} object.
func decodeEntry(dec *jsontext.Decoder) (backend.Item, error) {
	var it backend.Item
	tok, err := dec.ReadToken()
	if err != nil {
		return it, err
	}
	if tok.Kind() != '{' {
		return it, errors.New("not an object")
	}
	var hasID, hasScore bool
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return it, err
		}
		name := tok.String()
		val, err := dec.ReadToken()
		if err != nil {
			return it, err
		}
		switch name {
		case "id":
			if val.Kind() != '"' {
				return it, errors.New("id is not a string")
			}
			it.ID, hasID = val.String(), true
			if it.ID == "" || len(it.ID) > maxIDLen {
				return it, fmt.Errorf("id must be 1 to %d bytes", maxIDLen)
			}
		case "score":
			if val.Kind() != '0' {
				return it, errors.New("score is not a number")
			}
			// Parsed from the literal: Token.Float would clamp 1e400 to
			// the largest float rather than call it out of range.
			it.Score, err = strconv.ParseFloat(val.String(), 64)
			if err != nil || math.IsInf(it.Score, 0) || math.IsNaN(it.Score) {
				return it, fmt.Errorf("score %s is not a finite number", val.String())
			}
			hasScore = true
		default:
			return it, fmt.Errorf("unknown member %q (want id and score)", name)
		}
	}
	if _, err := dec.ReadToken(); err != nil { // '}'
		return it, err
	}
	switch {
	case !hasID:
		return it, errors.New("no id")
	case !hasScore:
		return it, errors.New("no score")
	}
	return it, nil
}

// badValue is a malformed stored value: a sick arm's output.
func badValue(format string, args ...any) error {
	return fmt.Errorf("%w: stored list: %s", backend.ErrBadOutput, fmt.Sprintf(format, args...))
}
