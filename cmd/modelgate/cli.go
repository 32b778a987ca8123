package main

// The ML teams' command line: `modelgate models …` and `modelgate endpoints …`
// are thin clients of the gateway's HTTP API. This file holds what they
// share: command groups, flag parsing (flags may come before, between or
// after the arguments), the gateway client (package client), error
// reporting and tables.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/fault"
)

const (
	cliDefaultServer = "http://127.0.0.1:8080"
	cliServerEnv     = "MODELGATE_SERVER"
	// cliTimeout bounds one HTTP call; registering a version loads its files
	// on the server, which may take a while for a large model.
	cliTimeout = 60 * time.Second
)

// Exit statuses of the client commands.
const (
	exitOK    = 0
	exitError = 1 // the server answered with an error, or could not be reached
	exitUsage = 2 // bad flags or arguments, or an input file that cannot be used
)

const cliExitHelp = `Exit status: 0 ok; 1 the server answered with an error (its status, code and message
are printed) or could not be reached; 2 usage error (bad flags or arguments, or an input
file that cannot be read or is not JSON).`

// cliSub is one command of a group, e.g. `list` of `models`.
type cliSub struct {
	name    string
	args    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// cliGroup is `modelgate models` or `modelgate endpoints`.
type cliGroup struct {
	name  string
	about string
	subs  []cliSub
}

func (g cliGroup) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: modelgate %s <command> [flags]\n\n%s\n\ncommands:\n", g.name, g.about)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range g.subs {
		fmt.Fprintf(tw, "  %s %s\t%s\n", s.name, s.args, s.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nEvery command takes --server URL (default $%s, else %s) and --json\n", cliServerEnv, cliDefaultServer)
	fmt.Fprintf(w, "(print the server's raw JSON instead of a table).\n")
	fmt.Fprintf(w, "Run 'modelgate %s <command> --help' for a command's flags.\n\n%s\n", g.name, cliExitHelp)
}

func (g cliGroup) run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		g.usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		g.usage(stdout)
		return exitOK
	case "help":
		if len(args) == 1 {
			g.usage(stdout)
			return exitOK
		}
		for _, s := range g.subs {
			if s.name == args[1] {
				return s.run([]string{"--help"}, stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "modelgate %s: unknown command %q\n\n", g.name, args[1])
		g.usage(stderr)
		return exitUsage
	}
	for _, s := range g.subs {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "modelgate %s: unknown command %q\n\n", g.name, args[0])
	g.usage(stderr)
	return exitUsage
}

// cliCmd is one invocation of a client command: its flags, including the
// common --server and --json, and its output streams.
type cliCmd struct {
	path     string // "models register"
	synopsis string // what follows the path in the usage line
	about    string
	fs       *flag.FlagSet
	argNames map[string]string // flag name -> placeholder shown in help
	server   string
	json     bool
	stdout   io.Writer
	stderr   io.Writer
}

func newCLICmd(path, synopsis, about string, stdout, stderr io.Writer) *cliCmd {
	c := &cliCmd{path: path, synopsis: synopsis, about: about, stdout: stdout, stderr: stderr, argNames: map[string]string{}}
	c.fs = flag.NewFlagSet("modelgate "+path, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard) // parse reports errors and usage itself; --help goes to stdout
	c.fs.Usage = func() {}
	server := cliDefaultServer
	if v := os.Getenv(cliServerEnv); v != "" {
		server = v
	}
	c.fs.StringVar(&c.server, "server", server, "gateway base URL; env "+cliServerEnv)
	c.argNames["server"] = "URL"
	c.fs.BoolVar(&c.json, "json", false, "print the server's raw JSON instead of a table")
	return c
}

// placeholder names the value of a flag in the help, e.g. --file BODY.json.
func (c *cliCmd) placeholder(flagName, name string) { c.argNames[flagName] = name }

func (c *cliCmd) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: modelgate %s %s\n", c.path, c.synopsis)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
	fmt.Fprintf(w, "\nflags:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	c.fs.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if ph := c.argNames[f.Name]; ph != "" {
			name += " " + ph
		}
		help := f.Usage
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			help += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, help)
	})
	tw.Flush()
	fmt.Fprintf(w, "\n%s\n", cliExitHelp)
}

// usageError prints msg and a pointer to --help; it returns exitUsage.
func (c *cliCmd) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "modelgate %s: %s\n", c.path, fmt.Sprintf(format, args...))
	fmt.Fprintf(c.stderr, "usage: modelgate %s %s\nRun 'modelgate %s --help' for the flags.\n", c.path, c.synopsis, c.path)
	return exitUsage
}

// parse parses args, where flags may be mixed with positional arguments
// ("--" ends the flags), and checks the number of positional arguments.
// When ok is false the command returns code: 0 after --help, 2 on a usage
// error (already reported).
func (c *cliCmd) parse(args []string, minPos, maxPos int) (pos []string, code int, ok bool) {
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(c.stdout)
				return nil, exitOK, false
			}
			return nil, c.usageError("%v", err), false
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minPos:
		return nil, c.usageError("missing arguments: want %s", c.positional()), false
	case len(pos) > maxPos:
		return nil, c.usageError("unexpected argument %q", pos[maxPos]), false
	}
	return pos, exitOK, true
}

// positional is the leading part of the synopsis that names the positional
// arguments, e.g. "MODEL VERSION".
func (c *cliCmd) positional() string {
	var names []string
	for _, w := range strings.Fields(c.synopsis) {
		if strings.ContainsAny(w[:1], "[(-") {
			break
		}
		names = append(names, w)
	}
	return strings.Join(names, " ")
}

// isSet reports whether a flag was given on the command line.
func (c *cliCmd) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// client checks --server and returns a client for it.
func (c *cliCmd) client() (*client.Client, int, bool) {
	s := strings.TrimSpace(c.server)
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	cl, err := client.New(s, client.Options{Timeout: cliTimeout, UserAgent: "modelgate-cli"})
	if err != nil {
		return nil, c.usageError("--server %q: want a base URL like %s", c.server, cliDefaultServer), false
	}
	return cl, exitOK, true
}

// fail reports err as "modelgate: …" and returns exitError. A gateway that
// could not be reached gets a hint at --server.
func (c *cliCmd) fail(err error) int {
	var ue *url.Error
	if errors.As(err, &ue) {
		fmt.Fprintf(c.stderr, "modelgate: %v (is the gateway running? set --server or %s)\n", err, cliServerEnv)
		return exitError
	}
	fmt.Fprintf(c.stderr, "modelgate: %v\n", err)
	return exitError
}

// printRaw writes the server's JSON as it came, ending in a newline.
func (c *cliCmd) printRaw(raw []byte) int {
	c.stdout.Write(raw)
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		io.WriteString(c.stdout, "\n")
	}
	return exitOK
}

// readInput reads a file named on the command line; "-" is standard input.
func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// readJSONFile reads a file that must hold one JSON value, as strict as
// the API's bodies: a repeated key is an error here, where it would
// otherwise be lost when the command rebuilds the body from the file.
func readJSONFile(flagName, name string) (json.RawMessage, error) {
	b, err := readInput(name)
	if err != nil {
		return nil, fmt.Errorf("--%s: %v", flagName, err)
	}
	b = bytes.TrimSpace(b)
	var v any
	if err := fault.DecodeJSON(b, &v); err != nil {
		return nil, fmt.Errorf("--%s %s: not JSON: %v", flagName, name, err)
	}
	return b, nil
}

// table is an aligned text table.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// row writes one table row; cells are kept on one line.
func row(tw io.Writer, cells ...string) {
	for i, s := range cells {
		cells[i] = cell(s)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

var cellReplacer = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return cellReplacer.Replace(s)
}

// cliTime shows a time from the server to the second, in UTC; "" when the
// answer had none.
func cliTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// cliTimeText is cliTime for a time the answer holds as RFC 3339 text (a
// report's generated_at); text that is not one is shown as it is.
func cliTimeText(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return s
	}
	return cliTime(t)
}

// cliValue shows a JSON value: a string as is, anything else as compact JSON.
func cliValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// done ends a command after its API call: with the error reported, or with
// the server's raw JSON printed under --json. ok is false when the command
// returns code now.
func (c *cliCmd) done(raw []byte, err error) (code int, ok bool) {
	if err != nil {
		return c.fail(err), false
	}
	if c.json {
		return c.printRaw(raw), false
	}
	return exitOK, true
}
