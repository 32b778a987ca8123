package redislist

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
)

func TestDecodeList(t *testing.T) {
	tests := []struct {
		raw  string
		want int    // entries, when accepted
		err  string // a part of the error; "" when accepted
	}{
		{raw: `[]`, want: 0},
		{raw: ` [ {"score": 1, "id": "a"} , {"id": "b", "score": -2.5e3} ] `, want: 2},
		{raw: `[{"id": "a", "score": 1}, {"id": "a", "score": 2}]`, want: 2}, // duplicates are the ranking's business
		{raw: ``, err: "EOF"},
		{raw: `{}`, err: "not a JSON array"},
		{raw: `null`, err: "not a JSON array"},
		{raw: `[1]`, err: "entry 0: not an object"},
		{raw: `[{"id": "a", "score": 1}] []`, err: "after the array"},
		{raw: `[{"id": "a", "score": 1}`, err: "EOF"},
		{raw: `[{"id": "a", "score": 1},]`, err: "invalid"},
		{raw: `[{"id": "a"}]`, err: "no score"},
		{raw: `[{"score": 1}]`, err: "no id"},
		{raw: `[{"id": "", "score": 1}]`, err: "id must be"},
		{raw: `[{"id": 7, "score": 1}]`, err: "id is not a string"},
		{raw: `[{"id": "a", "score": "1"}]`, err: "score is not a number"},
		{raw: `[{"id": "a", "score": 1e400}]`, err: "not a finite number"},
		{raw: `[{"id": "a", "score": 1, "id": "b"}]`, err: "duplicate"},
		{raw: `[{"id": "a", "score": 1, "why": "x"}]`, err: `unknown member "why"`},
		{raw: `[{"ID": "a", "score": 1}]`, err: `unknown member "ID"`},
		{raw: `[{"id": "a", "score": {"x": 1}}]`, err: "score is not a number"},
		{raw: "[{\"id\": \"\xff\", \"score\": 1}]", err: "UTF-8"},
		{raw: `[` + strings.Repeat(`{"id":"a","score":1},`, MaxJSONItems) + `{"id":"a","score":1}]`, err: "more than 10000 entries"},
	}
	for _, tc := range tests {
		items, err := decodeList([]byte(tc.raw))
		short := tc.raw
		if len(short) > 60 {
			short = short[:60] + "…"
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, backend.ErrBadOutput) {
				t.Errorf("%s: %v, want a bad output error with %q", short, err, tc.err)
			}
			continue
		}
		if err != nil || items == nil || len(items) != tc.want {
			t.Errorf("%s: %d items, %v; want %d", short, len(items), err, tc.want)
		}
	}
}

func FuzzDecodeList(f *testing.F) {
	for _, s := range []string{`[]`, `[{"id": "a", "score": 0.5}]`, `[{"id": "a", "score": 1}, {"id": "b", "score": -1}]`,
		`[{"id": "a"}]`, `{"id": "a", "score": 1}`, `[{"id": "a", "score": 1e308}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		items, err := decodeList(raw)
		if err != nil {
			if !errors.Is(err, backend.ErrBadOutput) {
				t.Fatalf("error %v is not bad output", err)
			}
			return
		}
		if len(items) > MaxJSONItems {
			t.Fatalf("%d items", len(items))
		}
		for _, it := range items {
			if it.ID == "" || len(it.ID) > maxIDLen || math.IsNaN(it.Score) || math.IsInf(it.Score, 0) {
				t.Fatalf("accepted %+v", it)
			}
		}
		// What was accepted is what encoding/json reads from it too.
		var std []backend.Item
		if err := json.Unmarshal(raw, &std); err != nil || len(std) != len(items) {
			t.Fatalf("encoding/json: %v, %d items; decodeList %d", err, len(std), len(items))
		}
		for i := range std {
			if std[i] != items[i] {
				t.Fatalf("item %d: encoding/json %+v, decodeList %+v", i, std[i], items[i])
			}
		}
	})
}
