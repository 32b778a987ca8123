package main

// The ML teams' command line: `modelgate models …` and `modelgate endpoints …`
// are thin clients of the gateway's HTTP API. This file holds what they
// share on top of internal/cli: the common --server and --json flags, the
// gateway client (package client), error reporting and the formatting of
// the API's values.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/internal/cli"
)

const (
	cliDefaultServer = "http://127.0.0.1:8080"
	cliServerEnv     = "MODELGATE_SERVER"
	// cliTimeout bounds one HTTP call; registering a version loads its files
	// on the server, which may take a while for a large model.
	cliTimeout = 60 * time.Second
)

const cliExitHelp = `Exit status: 0 ok; 1 the server answered with an error (its status, code and message
are printed) or could not be reached; 2 usage error (bad flags or arguments, or an input
file that cannot be read or is not JSON).`

// cliGroupNotes is what every client command shares, in a group's usage.
const cliGroupNotes = "Every command takes --server URL (default $" + cliServerEnv + ", else " + cliDefaultServer + ") and --json\n" +
	"(print the server's raw JSON instead of a table).\n"

// newCLIGroup is `modelgate models` or `modelgate endpoints`.
func newCLIGroup(name, about string, subs ...cli.Sub) cli.Group {
	return cli.Group{Prog: "modelgate", Name: name, About: about, Subs: subs, Notes: cliGroupNotes, ExitHelp: cliExitHelp}
}

// cliCmd is one invocation of a client command: the generic command with
// the common --server and --json.
type cliCmd struct {
	*cli.Command
	server string
	json   bool
}

func newCLICmd(path, synopsis, about string, stdout, stderr io.Writer) *cliCmd {
	c := &cliCmd{Command: cli.NewCommand(cli.Spec{Name: "modelgate " + path, Synopsis: synopsis, About: about, ExitHelp: cliExitHelp}, stdout, stderr)}
	server := cliDefaultServer
	if v := os.Getenv(cliServerEnv); v != "" {
		server = v
	}
	c.Flags.StringVar(&c.server, "server", server, "gateway base URL; env "+cliServerEnv)
	c.Placeholder("server", "URL")
	c.Flags.BoolVar(&c.json, "json", false, "print the server's raw JSON instead of a table")
	return c
}

// client checks --server and returns a client for it.
func (c *cliCmd) client() (*client.Client, int, bool) {
	s := strings.TrimSpace(c.server)
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	cl, err := client.New(s, client.Options{Timeout: cliTimeout, UserAgent: "modelgate-cli"})
	if err != nil {
		return nil, c.UsageError("--server %q: want a base URL like %s", c.server, cliDefaultServer), false
	}
	return cl, cli.ExitOK, true
}

// fail reports err as "modelgate: …" and returns cli.ExitError. A gateway that
// could not be reached gets a hint at --server.
func (c *cliCmd) fail(err error) int {
	var ue *url.Error
	if errors.As(err, &ue) {
		fmt.Fprintf(c.Stderr, "modelgate: %v (is the gateway running? set --server or %s)\n", err, cliServerEnv)
		return cli.ExitError
	}
	fmt.Fprintf(c.Stderr, "modelgate: %v\n", err)
	return cli.ExitError
}

// printRaw writes the server's JSON as it came, ending in a newline.
func (c *cliCmd) printRaw(raw []byte) int {
	c.Stdout.Write(raw)
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		io.WriteString(c.Stdout, "\n")
	}
	return cli.ExitOK
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
	return cli.ExitOK, true
}
