package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// NewTable returns an aligned text table on w: columns are separated by
// tabs in what is written and padded with two spaces in the output. Flush
// it after the last row.
func NewTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// Row writes one table row, each cell through Cell so that a row stays on
// one line and an empty cell shows. It rewrites cells in place.
func Row(tw io.Writer, cells ...string) {
	for i, s := range cells {
		cells[i] = Cell(s)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

var oneLine = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

// OneLine is s with tabs and line breaks turned into spaces: they would
// break a table's columns.
func OneLine(s string) string { return oneLine.Replace(s) }

// Cell is s as a table cell: "-" when empty (so that the columns stay
// apart), else OneLine(s).
func Cell(s string) string {
	if s == "" {
		return "-"
	}
	return OneLine(s)
}

// Truncate shortens s to at most n runes, marking the cut with "…". n must
// be at least 1.
func Truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// SortedKeys returns the keys of m in order, for output that does not
// change from run to run.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
