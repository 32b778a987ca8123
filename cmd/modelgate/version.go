package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"
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

// buildVersion is what `modelgate version` prints: where the binary came from.
type buildVersion struct {
	Module   string // module path
	Version  string // module version: a tag, a pseudo-version, or "(devel)"
	Revision string // VCS revision the binary was built from; empty when not stamped
	Time     string // commit time of Revision (RFC 3339)
	Modified bool   // the work tree had changes not in Revision
	Go       string // toolchain version
}

// readBuildVersion reads the version stamped into the running binary. The Go
// toolchain records the VCS revision only when it builds a main package
// inside a checkout (`go build`, `go install`; not `go run` of files nor
// `go test`), so the VCS fields may be empty.
func readBuildVersion() buildVersion {
	linked := buildVersion{Version: version, Revision: revision, Time: revisionTime, Modified: revisionModified == "true"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	return fromBuildInfo(bi, linked)
}

// fromBuildInfo picks the fields of buildVersion out of bi. The non-empty
// Version of linked wins over bi's; linked's VCS fields are used when bi has
// no revision.
func fromBuildInfo(bi *debug.BuildInfo, linked buildVersion) buildVersion {
	v := buildVersion{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if v.Revision == "" && linked.Revision != "" {
		v.Revision, v.Time, v.Modified = linked.Revision, linked.Time, linked.Modified
	}
	switch {
	case linked.Version != "":
		v.Version = linked.Version
	case (v.Version == "" || v.Version == "(devel)") && v.Revision != "":
		v.Version = pseudoVersion(v.Revision, v.Time, v.Modified)
	case v.Version == "":
		v.Version = "(devel)"
	}
	return v
}

// pseudoVersion is the version the toolchain gives an untagged commit
// (v0.0.0-yyyymmddhhmmss-abcdefabcdef, "+dirty" when modified), built from
// what the linker was told.
func pseudoVersion(rev, commitTime string, modified bool) string {
	t, err := time.Parse(time.RFC3339, commitTime)
	if err != nil || len(rev) < 12 {
		return "(devel)"
	}
	v := "v0.0.0-" + t.UTC().Format("20060102150405") + "-" + rev[:12]
	if modified {
		v += "+dirty"
	}
	return v
}

// String is the version's first line, e.g.
// "v0.0.0-20261207031200-b40fe93c1a2d+dirty (revision b40fe93c1a2d…, modified)".
func (v buildVersion) String() string {
	if v.Revision == "" {
		return v.Version
	}
	mod := ""
	if v.Modified {
		mod = ", modified"
	}
	return fmt.Sprintf("%s (revision %s%s)", v.Version, v.Revision, mod)
}

// print writes the version as `modelgate version` shows it.
func (v buildVersion) print(w io.Writer) {
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
	readBuildVersion().print(stdout)
	return 0
}
