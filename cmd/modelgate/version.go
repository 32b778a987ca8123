package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/modelgate/modelgate/internal/buildinfo"
)

// Set at link time with -ldflags "-X main.NAME=…". version replaces the
// module version the Go toolchain stamps into the binary. The others stand
// in for the toolchain's VCS stamp where it has none: the toolchain stamps
// only a build inside a git clone (not a `git worktree`) without
// -buildvcs=false, so `make build` passes what git says.
var (
	version          = ""
	revision         = "" // full commit hash
	revisionTime     = "" // its commit time, RFC 3339
	revisionModified = "" // "true" when the work tree had changes
)

// readBuildVersion reads the version of the running binary, with what the
// Makefile passed to the linker.
func readBuildVersion() buildinfo.Version {
	return buildinfo.Read(buildinfo.Version{Version: version, Revision: revision, Time: revisionTime, Modified: revisionModified == "true"})
}

// printVersion writes v as `modelgate version` shows it.
func printVersion(w io.Writer, v buildinfo.Version) {
	fmt.Fprintf(w, "modelgate %s\n", v.Version)
	if v.Module != "" {
		fmt.Fprintf(w, "module:    %s\n", v.Module)
	}
	if v.Revision == "" {
		fmt.Fprintln(w, "revision:  unknown (built without VCS information, e.g. by go run or -buildvcs=false)")
	} else {
		rev := v.Revision
		if v.Modified {
			rev += " (modified: the work tree had uncommitted changes)"
		}
		fmt.Fprintf(w, "revision:  %s\n", rev)
		if v.Time != "" {
			fmt.Fprintf(w, "committed: %s\n", v.Time)
		}
	}
	if v.Go != "" {
		fmt.Fprintf(w, "go:        %s\n", strings.TrimPrefix(v.Go, "go"))
	}
}

// runVersion is `modelgate version`.
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			fmt.Fprintln(stdout, "usage: modelgate version\n\nPrints the module version, the VCS revision the binary was built from\n(with \"modified\" when the work tree had uncommitted changes), its commit\ntime and the Go version.")
			return 0
		}
		fmt.Fprintf(stderr, "modelgate version: takes no arguments, got %q\n", args[0])
		return 2
	}
	printVersion(stdout, readBuildVersion())
	return 0
}
