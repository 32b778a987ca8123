// Package cli is the machinery of a command line with subcommands: groups of
// commands (`prog group command`), a command's flag set with its usage text,
// parsing where flags may come before, between or after the positional
// arguments, usage errors with their exit status, and aligned text tables.
//
// It knows nothing of what the commands do; a program adds its own flags,
// help text and error reporting around it.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit statuses a command returns.
const (
	ExitOK    = 0
	ExitError = 1 // the command's work failed
	ExitUsage = 2 // bad flags or arguments
)

// Sub is one command of a group, e.g. `list` of `prog models`.
type Sub struct {
	Name    string
	Args    string // what follows the name in the group's command list, e.g. "MODEL VERSION"
	Summary string
	// Run runs the command with the arguments after its name and returns
	// the exit status.
	Run func(args []string, stdout, stderr io.Writer) int
}

// Group is a command whose first argument names one of its subcommands,
// e.g. `prog models list`. A Group is a value: it holds no state between
// runs and is safe for concurrent use when its Subs are.
type Group struct {
	Prog  string // the program, e.g. "modelgate"
	Name  string // the group, e.g. "models"
	About string // a paragraph under the usage line
	Subs  []Sub
	// Notes, when not empty, is printed after the command list, before the
	// pointer to a command's --help; it ends in a newline. It is the place
	// for what every command of the group shares, e.g. common flags.
	Notes string
	// ExitHelp, when not empty, is a paragraph at the end of the usage
	// that explains the exit statuses.
	ExitHelp string
}

func (g Group) path() string { return g.Prog + " " + g.Name }

// Usage writes the group's usage: its commands with their summaries.
func (g Group) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\n%s\n\ncommands:\n", g.path(), g.About)
	tw := NewTable(w)
	for _, s := range g.Subs {
		fmt.Fprintf(tw, "  %s %s\t%s\n", s.Name, s.Args, s.Summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s", g.Notes)
	fmt.Fprintf(w, "Run '%s <command> --help' for a command's flags.\n", g.path())
	if g.ExitHelp != "" {
		fmt.Fprintf(w, "\n%s\n", g.ExitHelp)
	}
}

// Run runs the subcommand args[0] names with the rest of args. No
// arguments or an unknown command print the usage to stderr and return
// ExitUsage; -h, --help and `help` print it to stdout, and `help COMMAND`
// runs COMMAND --help.
func (g Group) Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		g.Usage(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		g.Usage(stdout)
		return ExitOK
	case "help":
		if len(args) == 1 {
			g.Usage(stdout)
			return ExitOK
		}
		if s, ok := g.find(args[1]); ok {
			return s.Run([]string{"--help"}, stdout, stderr)
		}
		return g.unknown(args[1], stderr)
	}
	if s, ok := g.find(args[0]); ok {
		return s.Run(args[1:], stdout, stderr)
	}
	return g.unknown(args[0], stderr)
}

func (g Group) find(name string) (Sub, bool) {
	for _, s := range g.Subs {
		if s.Name == name {
			return s, true
		}
	}
	return Sub{}, false
}

func (g Group) unknown(name string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", g.path(), name)
	g.Usage(stderr)
	return ExitUsage
}

// Spec describes a command for its usage text and error messages.
type Spec struct {
	Name     string // the whole command, e.g. "modelgate models register"
	Synopsis string // what follows Name in the usage line; its leading words up to the first starting with '[', '(' or '-' name the positional arguments
	About    string // a paragraph under the usage line; may be empty
	ExitHelp string // a paragraph at the end of the usage; may be empty
}

// Command is one invocation of a command: its flag set and output streams.
// Build it with NewCommand, define flags on Flags, then call Parse once. A
// Command is not safe for concurrent use.
type Command struct {
	Spec
	// Flags is the command's flag set; define the command's flags on it
	// before Parse. Its errors and usage are reported by Parse, not by the
	// flag package.
	Flags  *flag.FlagSet
	Stdout io.Writer // where --help goes
	Stderr io.Writer // where usage errors go

	placeholders map[string]string // flag name -> placeholder shown in help
}

// NewCommand returns a command with an empty flag set.
func NewCommand(spec Spec, stdout, stderr io.Writer) *Command {
	c := &Command{Spec: spec, Stdout: stdout, Stderr: stderr, placeholders: map[string]string{}}
	c.Flags = flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	c.Flags.SetOutput(io.Discard) // Parse reports errors and usage itself; --help goes to stdout
	c.Flags.Usage = func() {}
	return c
}

// Placeholder names the value of a flag in the help, e.g. --file BODY.json.
func (c *Command) Placeholder(flagName, name string) { c.placeholders[flagName] = name }

// Usage writes the command's usage: the synopsis, About, every flag with
// its placeholder, help and non-zero default, and ExitHelp.
func (c *Command) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s %s\n", c.Name, c.Synopsis)
	if c.About != "" {
		fmt.Fprintf(w, "\n%s\n", c.About)
	}
	fmt.Fprintf(w, "\nflags:\n")
	tw := NewTable(w)
	c.Flags.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if ph := c.placeholders[f.Name]; ph != "" {
			name += " " + ph
		}
		help := f.Usage
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			help += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, help)
	})
	tw.Flush()
	if c.ExitHelp != "" {
		fmt.Fprintf(w, "\n%s\n", c.ExitHelp)
	}
}

// UsageError prints the message, the usage line and a pointer to --help to
// Stderr; it returns ExitUsage.
func (c *Command) UsageError(format string, args ...any) int {
	fmt.Fprintf(c.Stderr, "%s: %s\n", c.Name, fmt.Sprintf(format, args...))
	fmt.Fprintf(c.Stderr, "usage: %s %s\nRun '%s --help' for the flags.\n", c.Name, c.Synopsis, c.Name)
	return ExitUsage
}

// Parse parses args, where flags may be mixed with positional arguments
// ("--" ends the flags), and checks that there are between minPos and
// maxPos positional arguments. When ok is false the command returns code:
// ExitOK after --help (the usage is on Stdout), ExitUsage on a usage error
// (already reported on Stderr).
func (c *Command) Parse(args []string, minPos, maxPos int) (pos []string, code int, ok bool) {
	for {
		if err := c.Flags.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.Usage(c.Stdout)
				return nil, ExitOK, false
			}
			return nil, c.UsageError("%v", err), false
		}
		rest := c.Flags.Args()
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
		return nil, c.UsageError("missing arguments: want %s", c.positional()), false
	case len(pos) > maxPos:
		return nil, c.UsageError("unexpected argument %q", pos[maxPos]), false
	}
	return pos, ExitOK, true
}

// positional is the leading part of the synopsis that names the positional
// arguments, e.g. "MODEL VERSION".
func (c *Command) positional() string {
	var names []string
	for _, w := range strings.Fields(c.Synopsis) {
		if strings.ContainsAny(w[:1], "[(-") {
			break
		}
		names = append(names, w)
	}
	return strings.Join(names, " ")
}

// IsSet reports whether a flag was given on the command line, as opposed
// to keeping its default.
func (c *Command) IsSet(name string) bool {
	set := false
	c.Flags.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
