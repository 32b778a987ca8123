package cli

import (
	"bytes"
	"reflect"
	"testing"
)

func TestTable(t *testing.T) {
	var b bytes.Buffer
	tw := NewTable(&b)
	Row(tw, "NAME", "NOTE")
	Row(tw, "a", "")
	Row(tw, "longer", "two\tparts\nand a line")
	tw.Flush()
	want := "NAME    NOTE\n" +
		"a       -\n" +
		"longer  two parts and a line\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestCell(t *testing.T) {
	cases := []struct{ in, cell, oneLine string }{
		{"", "-", ""},
		{"x", "x", "x"},
		{"a\tb\r\nc", "a b  c", "a b  c"},
	}
	for _, tc := range cases {
		if got := Cell(tc.in); got != tc.cell {
			t.Errorf("Cell(%q) = %q, want %q", tc.in, got, tc.cell)
		}
		if got := OneLine(tc.in); got != tc.oneLine {
			t.Errorf("OneLine(%q) = %q, want %q", tc.in, got, tc.oneLine)
		}
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exact", 5, "exact"},
		{"longer text", 6, "longe…"},
		{"ééééé", 3, "éé…"}, // runes, not bytes
	}
	for _, tc := range cases {
		if got := Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestSortedKeys(t *testing.T) {
	got := SortedKeys(map[string]int{"b": 1, "a": 2, "c": 3})
	if want := []string{"a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SortedKeys = %q, want %q", got, want)
	}
	if got := SortedKeys(map[string]bool(nil)); len(got) != 0 {
		t.Errorf("SortedKeys(nil) = %q", got)
	}
}
