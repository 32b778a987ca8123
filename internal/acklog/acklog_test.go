package acklog

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	type step func(l *Log)
	b := func(id string, w int) step { return func(l *Log) { l.Begin(id, w) } }
	s := func(w int) step { return func(l *Log) { l.Synced(w) } }
	a := func(id string) step { return func(l *Log) { l.Ack(id) } }
	cases := []struct {
		name       string
		oneAtATime bool
		steps      []step
		wantErr    string // "" for none
	}{
		{"synced before ack", true, []step{b("1", 1), s(1), a("1"), b("2", 2), s(2), a("2")}, ""},
		{"two syncs for one write", true, []step{b("1", 2), s(1), s(1), a("1")}, ""},
		{"sync of something else in between", true, []step{b("1", 1), s(0), s(1), a("1")}, ""},
		{"no sync", true, []step{b("1", 1), a("1")}, `write "1" was acknowledged with no fsync`},
		{"only an unrelated sync", false, []step{b("1", 1), s(0), a("1")}, `write "1" was acknowledged with no fsync`},
		{"sync before begin", false, []step{s(1), b("1", 1), a("1")}, `write "1" was acknowledged with no fsync`},
		// Acknowledged first, synced after: the late sync lands in the next
		// write's window, which only the exact sums catch.
		{"sync after ack", true, []step{b("1", 1), a("1"), b("2", 1), s(1), s(1), a("2")}, `write "1" was acknowledged with no fsync`},
		{"late sync inside the next write", true, []step{b("1", 1), s(1), a("1"), b("2", 1), s(1), s(1), a("2")}, `write "2" of weight 1 was acknowledged after fsyncs holding 2`},
		{"sync after the last ack", true, []step{b("1", 1), s(1), a("1"), s(1)}, "outside every write"},
		{"partial sync", true, []step{b("1", 2), s(1), a("1")}, "holding 1"},
		{"overlapping writes share a sync", false, []step{b("1", 1), b("2", 1), s(2), a("2"), a("1")}, ""},
		{"overlap is not one at a time", true, []step{b("1", 1), b("2", 1), s(2), a("2"), a("1")}, "not one at a time"},
		{"overlap, one acked early", false, []step{b("1", 1), b("2", 1), a("2"), s(2), a("1")}, `write "2" was acknowledged with no fsync`},
		// "2" waited for the sync of "1" only; its own came later.
		{"answered on another write's sync", false, []step{b("1", 1), b("2", 1), s(1), a("1"), a("2"), s(1)}, `writes of weight 2 were acknowledged but fsyncs held only 1`},
		{"never acknowledged", false, []step{b("1", 1), s(0)}, ""},
		{"ack without begin", false, []step{a("1")}, "never begun"},
		{"acked twice", false, []step{b("1", 1), s(1), a("1"), a("1")}, "acknowledged twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var l Log
			for _, st := range tc.steps {
				st(&l)
			}
			err := l.Check(tc.oneAtATime)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Check passed, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Check: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestTotals(t *testing.T) {
	var l Log
	l.Begin("1", 3)
	l.Synced(2)
	l.Synced(0)
	l.Synced(1)
	l.Ack("1")
	if n, w := l.Totals(); n != 2 || w != 3 {
		t.Fatalf("Totals = %d, %d; want 2 syncs of weight 3", n, w)
	}
}
