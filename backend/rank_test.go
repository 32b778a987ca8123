package backend

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

type floats []float64

func (f floats) Len() int         { return len(f) }
func (f floats) At(i int) float64 { return f[i] }

func TestRank(t *testing.T) {
	cases := []struct {
		name    string
		ids     IDs
		scores  floats
		req     Request
		only    bool
		want    []Item
		wantErr error
	}{
		{name: "best first, ties by id", ids: IDs{Strings: []string{"c", "b", "a", "d"}}, scores: floats{1, 2, 2, 0},
			req: Request{K: 3}, want: []Item{{"a", 2}, {"b", 2}, {"c", 1}}},
		{name: "k beyond the rows", ids: IDs{Strings: []string{"a", "b"}}, scores: floats{1, 2},
			req: Request{K: 5}, want: []Item{{"b", 2}, {"a", 1}}},
		{name: "exclude", ids: IDs{Bytes: [][]byte{[]byte("a"), []byte("b"), []byte("c")}}, scores: floats{3, 2, 1},
			req: Request{K: 2, Exclude: map[string]struct{}{"a": {}}}, want: []Item{{"b", 2}, {"c", 1}}},
		{name: "only candidates", ids: IDs{Bytes: [][]byte{[]byte("a"), []byte("b"), []byte("c")}}, scores: floats{3, 2, 1},
			req: Request{K: 3, Candidates: []string{"c", "a"}}, only: true, want: []Item{{"a", 3}, {"c", 1}}},
		{name: "a duplicate id keeps its best score", ids: IDs{Strings: []string{"a", "a", "b", "c"}}, scores: floats{1, 5, 4, 3},
			req: Request{K: 3}, want: []Item{{"a", 5}, {"b", 4}, {"c", 3}}},
		{name: "NaN of an excluded row", ids: IDs{Strings: []string{"a", "b"}}, scores: floats{1, math.NaN()},
			req: Request{K: 1, Exclude: map[string]struct{}{"b": {}}}, wantErr: ErrBadOutput},
		{name: "infinite score", ids: IDs{Strings: []string{"a"}}, scores: floats{math.Inf(-1)},
			req: Request{K: 1}, wantErr: ErrBadOutput},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rank(tc.ids, tc.scores, &tc.req, tc.only)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
