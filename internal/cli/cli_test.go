package cli

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
)

// newTestCommand is `prog cmd NAME [ARG] [flags]` with --n and --v.
func newTestCommand(stdout, stderr io.Writer) (*Command, *int, *bool) {
	c := NewCommand(Spec{Name: "prog cmd", Synopsis: "NAME [ARG] [--n N] [--v]", About: "Does a thing.", ExitHelp: "Exit status: 0 ok; 2 usage."}, stdout, stderr)
	n := c.Flags.Int("n", 3, "how many")
	c.Placeholder("n", "N")
	v := c.Flags.Bool("v", false, "verbose")
	return c, n, v
}

func TestParse(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		pos      []string
		n        int
		v        bool
		code     int
		ok       bool
		isSetN   bool
		stdout   []string
		stderr   []string
		noStderr bool
	}{
		{name: "flags after", args: []string{"a", "--n", "5", "--v"}, pos: []string{"a"}, n: 5, v: true, ok: true, isSetN: true},
		{name: "flags before", args: []string{"-v", "--n=7", "a", "b"}, pos: []string{"a", "b"}, n: 7, v: true, ok: true, isSetN: true},
		{name: "flags between", args: []string{"a", "--n", "1", "b", "-v"}, pos: []string{"a", "b"}, n: 1, v: true, ok: true, isSetN: true},
		{name: "default kept", args: []string{"a"}, pos: []string{"a"}, n: 3, ok: true},
		{name: "default given", args: []string{"a", "--n", "3"}, pos: []string{"a"}, n: 3, ok: true, isSetN: true},
		{name: "double dash ends flags", args: []string{"--v", "--", "-x"}, pos: []string{"-x"}, n: 3, v: true, ok: true},
		{name: "double dash after a positional", args: []string{"a", "--", "--n"}, pos: []string{"a", "--n"}, n: 3, ok: true},
		{name: "help", args: []string{"a", "--help"}, code: ExitOK,
			stdout: []string{"usage: prog cmd NAME [ARG] [--n N] [--v]\n\nDoes a thing.\n\nflags:\n", "  --n N", "how many (default 3)", "  --v", "verbose\n", "\nExit status: 0 ok; 2 usage.\n"}, noStderr: true},
		{name: "-h", args: []string{"-h"}, code: ExitOK, stdout: []string{"usage: prog cmd"}, noStderr: true},
		{name: "unknown flag", args: []string{"a", "--bogus"}, code: ExitUsage,
			stderr: []string{"prog cmd: flag provided but not defined: -bogus\n", "usage: prog cmd NAME [ARG] [--n N] [--v]\n", "Run 'prog cmd --help' for the flags.\n"}},
		{name: "bad value", args: []string{"a", "--n", "x"}, code: ExitUsage, stderr: []string{"prog cmd: invalid value \"x\" for flag -n"}},
		{name: "missing value", args: []string{"a", "--n"}, code: ExitUsage, stderr: []string{"flag needs an argument: -n"}},
		{name: "missing positional", args: []string{"--v"}, code: ExitUsage, stderr: []string{"prog cmd: missing arguments: want NAME\n"}},
		{name: "too many positionals", args: []string{"a", "b", "c"}, code: ExitUsage, stderr: []string{"prog cmd: unexpected argument \"c\"\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			c, n, v := newTestCommand(&out, &errb)
			pos, code, ok := c.Parse(tc.args, 1, 2)
			if ok != tc.ok || code != tc.code {
				t.Fatalf("Parse(%q) = code %d, ok %v; want %d, %v\nstdout:\n%s\nstderr:\n%s", tc.args, code, ok, tc.code, tc.ok, out.String(), errb.String())
			}
			if ok {
				if !reflect.DeepEqual(pos, tc.pos) || *n != tc.n || *v != tc.v {
					t.Errorf("Parse(%q) = %q, n %d, v %v; want %q, %d, %v", tc.args, pos, *n, *v, tc.pos, tc.n, tc.v)
				}
				if got := c.IsSet("n"); got != tc.isSetN {
					t.Errorf("IsSet(n) = %v, want %v", got, tc.isSetN)
				}
				if out.Len()+errb.Len() > 0 {
					t.Errorf("printed on success:\n%s%s", out.String(), errb.String())
				}
			}
			inOrder(t, "stdout", out.String(), tc.stdout)
			inOrder(t, "stderr", errb.String(), tc.stderr)
			if tc.noStderr && errb.Len() > 0 {
				t.Errorf("stderr not empty:\n%s", errb.String())
			}
		})
	}
}

func TestCommandUsageWithoutAboutAndExitHelp(t *testing.T) {
	var out bytes.Buffer
	c := NewCommand(Spec{Name: "prog x", Synopsis: "[flags]"}, &out, io.Discard)
	c.Flags.String("s", "", "a string")
	c.Usage(&out)
	want := "usage: prog x [flags]\n\nflags:\n  --s  a string\n"
	if out.String() != want {
		t.Errorf("usage = %q, want %q", out.String(), want)
	}
}

func TestGroup(t *testing.T) {
	var ran []string
	sub := func(name string) Sub {
		return Sub{Name: name, Args: "ARG", Summary: "does " + name, Run: func(args []string, stdout, stderr io.Writer) int {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return 7
		}}
	}
	g := Group{Prog: "prog", Name: "things", About: "Handles things.", Subs: []Sub{sub("list"), sub("show-all")},
		Notes: "Every command takes --x.\n", ExitHelp: "Exit status: 0 ok."}
	usage := "usage: prog things <command> [flags]\n\nHandles things.\n\ncommands:\n" +
		"  list ARG      does list\n  show-all ARG  does show-all\n\n" +
		"Every command takes --x.\nRun 'prog things <command> --help' for a command's flags.\n\nExit status: 0 ok.\n"
	cases := []struct {
		name           string
		args           []string
		code           int
		ran            []string
		stdout, stderr string
	}{
		{name: "no arguments", args: nil, code: ExitUsage, stderr: usage},
		{name: "--help", args: []string{"--help"}, code: ExitOK, stdout: usage},
		{name: "-h", args: []string{"-h"}, code: ExitOK, stdout: usage},
		{name: "help", args: []string{"help"}, code: ExitOK, stdout: usage},
		{name: "help command", args: []string{"help", "show-all"}, code: 7, ran: []string{"show-all --help"}},
		{name: "help unknown", args: []string{"help", "nope"}, code: ExitUsage, stderr: "prog things: unknown command \"nope\"\n\n" + usage},
		{name: "command", args: []string{"list", "a", "--b"}, code: 7, ran: []string{"list a --b"}},
		{name: "unknown", args: []string{"lst"}, code: ExitUsage, stderr: "prog things: unknown command \"lst\"\n\n" + usage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran = nil
			var out, errb bytes.Buffer
			if code := g.Run(tc.args, &out, &errb); code != tc.code {
				t.Errorf("code = %d, want %d", code, tc.code)
			}
			if !reflect.DeepEqual(ran, tc.ran) {
				t.Errorf("ran %q, want %q", ran, tc.ran)
			}
			if out.String() != tc.stdout {
				t.Errorf("stdout = %q, want %q", out.String(), tc.stdout)
			}
			if errb.String() != tc.stderr {
				t.Errorf("stderr = %q, want %q", errb.String(), tc.stderr)
			}
		})
	}
}

func TestGroupWithoutNotesAndExitHelp(t *testing.T) {
	var out bytes.Buffer
	Group{Prog: "p", Name: "g", About: "A.", Subs: []Sub{{Name: "a", Summary: "x"}}}.Usage(&out)
	want := "usage: p g <command> [flags]\n\nA.\n\ncommands:\n  a   x\n\nRun 'p g <command> --help' for a command's flags.\n"
	if out.String() != want {
		t.Errorf("usage = %q, want %q", out.String(), want)
	}
}

// inOrder checks that out holds each of want, in order.
func inOrder(t *testing.T, what, out string, want []string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (in order):\n%s", what, w, out)
			return
		}
		rest = rest[i+len(w):]
	}
}
