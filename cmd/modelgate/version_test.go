package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/buildinfo"
	"github.com/modelgate/modelgate/internal/testenv"
)

func TestVersionFromBuildInfo(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	cases := []struct {
		name   string
		bi     debug.BuildInfo
		linked buildinfo.Version // what -ldflags -X set
		want   []string          // lines of `modelgate version`, in order
		not    []string
	}{
		{
			name: "clean checkout",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/modelgate/modelgate", Version: "v0.0.0-20261207031200-b40fe93c1a2d"},
				Settings: settings("vcs", "git", "vcs.revision", "b40fe93c1a2d0000000000000000000000000000", "vcs.time", "2026-12-07T03:12:00Z", "vcs.modified", "false")},
			want: []string{"modelgate v0.0.0-20261207031200-b40fe93c1a2d\n", "module:    github.com/modelgate/modelgate\n",
				"revision:  b40fe93c1a2d0000000000000000000000000000\n", "committed: 2026-12-07T03:12:00Z\n", "go:        1.26.8\n"},
			not: []string{"modified"},
		},
		{
			name: "dirty work tree",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/modelgate/modelgate", Version: "v0.0.0-20261207031200-b40fe93c1a2d+dirty"},
				Settings: settings("vcs.revision", "b40fe93c1a2d0000000000000000000000000000", "vcs.modified", "true")},
			want: []string{"modelgate v0.0.0-20261207031200-b40fe93c1a2d+dirty\n", "revision:  b40fe93c1a2d0000000000000000000000000000 (modified: the work tree had uncommitted changes)\n"},
			not:  []string{"committed:"},
		},
		{
			name: "tagged release",
			bi: debug.BuildInfo{Main: debug.Module{Path: "github.com/modelgate/modelgate", Version: "v1.4.0"},
				Settings: settings("vcs.revision", "abc", "vcs.modified", "false")},
			want: []string{"modelgate v1.4.0\n", "revision:  abc\n"},
		},
		{
			name:   "no VCS stamp, revision from the linker",
			bi:     debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/modelgate/modelgate", Version: "(devel)"}},
			linked: buildinfo.Version{Revision: "b40fe93be6a869ae21ad3312b10f2c221c029a16", Time: "2026-12-07T04:27:12+01:00", Modified: true},
			want: []string{"modelgate v0.0.0-20261207032712-b40fe93be6a8+dirty\n", "revision:  b40fe93be6a869ae21ad3312b10f2c221c029a16 (modified",
				"committed: 2026-12-07T04:27:12+01:00\n"},
		},
		{
			name:   "stamp wins over the linker's revision, linker's version wins",
			bi:     debug.BuildInfo{Main: debug.Module{Path: "m", Version: "v0.0.0-x"}, Settings: settings("vcs.revision", "aaa", "vcs.modified", "false")},
			linked: buildinfo.Version{Version: "v2.0.0-rc1", Revision: "bbb"},
			want:   []string{"modelgate v2.0.0-rc1\n", "revision:  aaa\n"},
			not:    []string{"bbb"},
		},
		{
			name: "no VCS stamp",
			bi:   debug.BuildInfo{Main: debug.Module{Path: "github.com/modelgate/modelgate"}},
			want: []string{"modelgate (devel)\n", "revision:  unknown"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printVersion(&b, buildinfo.FromBuildInfo(&tc.bi, tc.linked))
			out := b.String()
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q:\n%s", n, out)
				}
			}
		})
	}
}

// `make build` in a checkout gives a binary that names the commit it was
// built from, whether or not the toolchain stamps it (git worktrees and
// GOFLAGS=-buildvcs=false do not).
func TestVersionNamesRevision(t *testing.T) {
	git := testenv.LookPath(t, "apt-get install git", "git")
	mk := testenv.LookPath(t, "apt-get install make", "make")
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		testenv.SkipOrFail(t, "not in a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "modelgate")
	if out, err := exec.Command(mk, "-s", "-C", "../..", "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("modelgate version: %v\n%s", err, out)
	}
	rev := strings.TrimSpace(string(head))
	for _, want := range []string{"modelgate v", "-" + rev[:12], "module:    github.com/modelgate/modelgate\n", "revision:  " + rev, "committed: 20", "go:        "} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("modelgate version lacks %q:\n%s", want, out)
		}
	}
}
