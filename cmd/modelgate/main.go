// Command modelgate is the recommendation gateway: `modelgate serve` runs it,
// the other subcommands help to try and operate it. Run `modelgate help`.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/gin-gonic/gin"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the gateway (HTTP and gRPC)", runServe},
		{"demo-traffic", "play simulated users against a running gateway", runDemoTraffic},
		{"simulate", "offline bandit simulator: regret of policies on simulated arms", runSimulate},
		{"models", "register, list, show and delete model versions (HTTP client)", runModels},
		{"endpoints", "list, show and apply endpoints; add, pause and resume arms (HTTP client)", runEndpoints},
		{"keys", "create, list and revoke API keys (on the data dir or Redis)", runKeys},
		{"version", "print the module version and the VCS revision it was built from", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: modelgate <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'modelgate <command> --help' for a command's flags.")
}

func main() {
	gin.SetMode(gin.ReleaseMode) // gin's one global: set once, before any handler exists
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "modelgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
