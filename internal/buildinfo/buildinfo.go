// Package buildinfo reads where the running binary came from: its module
// version and the VCS revision it was built from, from what the Go
// toolchain stamps into the binary and, where the toolchain stamped no
// revision, from what the build passed to the linker.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"time"
)

// Version is where a binary came from. The zero value is a binary about
// which nothing is known.
type Version struct {
	Module   string // module path
	Version  string // module version: a tag, a pseudo-version, or "(devel)"
	Revision string // VCS revision the binary was built from; empty when not stamped
	Time     string // commit time of Revision (RFC 3339)
	Modified bool   // the work tree had changes not in Revision
	Go       string // toolchain version, e.g. "go1.26.8"
}

// Read reads the version stamped into the running binary; linked is what
// the build set with -ldflags -X (see FromBuildInfo). The Go toolchain
// records the VCS revision only when it builds a main package inside a
// checkout (`go build`, `go install`; not `go run` of files nor `go test`,
// nor in a `git worktree` or with -buildvcs=false), so the VCS fields may
// be empty unless linked has them.
func Read(linked Version) Version {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	return FromBuildInfo(bi, linked)
}

// FromBuildInfo picks the fields of Version out of bi. The non-empty
// Version of linked wins over bi's; linked's VCS fields are used when bi
// has no revision. Without a version from either, an untagged revision
// gets the pseudo-version the toolchain would give it, else "(devel)".
func FromBuildInfo(bi *debug.BuildInfo, linked Version) Version {
	v := Version{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
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
func (v Version) String() string {
	if v.Revision == "" {
		return v.Version
	}
	mod := ""
	if v.Modified {
		mod = ", modified"
	}
	return fmt.Sprintf("%s (revision %s%s)", v.Version, v.Revision, mod)
}
