package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const mod = "github.com/modelgate/modelgate"
	cases := []struct {
		name   string
		bi     debug.BuildInfo
		linked Version // what -ldflags -X set
		want   Version
	}{
		{
			name: "clean checkout",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: mod, Version: "v0.0.0-20261207031200-b40fe93c1a2d"},
				Settings: settings("vcs", "git", "vcs.revision", "b40fe93c1a2d0000000000000000000000000000", "vcs.time", "2026-12-07T03:12:00Z", "vcs.modified", "false")},
			want: Version{Module: mod, Version: "v0.0.0-20261207031200-b40fe93c1a2d", Revision: "b40fe93c1a2d0000000000000000000000000000", Time: "2026-12-07T03:12:00Z", Go: "go1.26.8"},
		},
		{
			name: "dirty work tree",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: mod, Version: "v0.0.0-20261207031200-b40fe93c1a2d+dirty"},
				Settings: settings("vcs.revision", "b40fe93c1a2d0000000000000000000000000000", "vcs.modified", "true")},
			want: Version{Module: mod, Version: "v0.0.0-20261207031200-b40fe93c1a2d+dirty", Revision: "b40fe93c1a2d0000000000000000000000000000", Modified: true, Go: "go1.26.8"},
		},
		{
			name: "tagged release",
			bi:   debug.BuildInfo{Main: debug.Module{Path: mod, Version: "v1.4.0"}, Settings: settings("vcs.revision", "abc", "vcs.modified", "false")},
			want: Version{Module: mod, Version: "v1.4.0", Revision: "abc"},
		},
		{
			name:   "no VCS stamp, revision from the linker",
			bi:     debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: mod, Version: "(devel)"}},
			linked: Version{Revision: "b40fe93be6a869ae21ad3312b10f2c221c029a16", Time: "2026-12-07T04:27:12+01:00", Modified: true},
			want: Version{Module: mod, Version: "v0.0.0-20261207032712-b40fe93be6a8+dirty", Revision: "b40fe93be6a869ae21ad3312b10f2c221c029a16",
				Time: "2026-12-07T04:27:12+01:00", Modified: true, Go: "go1.26.8"},
		},
		{
			name:   "linker's revision with a time that does not parse",
			bi:     debug.BuildInfo{Main: debug.Module{Path: mod}},
			linked: Version{Revision: "b40fe93be6a869ae21ad3312b10f2c221c029a16", Time: "yesterday"},
			want:   Version{Module: mod, Version: "(devel)", Revision: "b40fe93be6a869ae21ad3312b10f2c221c029a16", Time: "yesterday"},
		},
		{
			name:   "linker's revision too short for a pseudo-version",
			bi:     debug.BuildInfo{Main: debug.Module{Path: mod}},
			linked: Version{Revision: "b40fe93", Time: "2026-12-07T04:27:12Z"},
			want:   Version{Module: mod, Version: "(devel)", Revision: "b40fe93", Time: "2026-12-07T04:27:12Z"},
		},
		{
			name:   "stamp wins over the linker's revision, linker's version wins",
			bi:     debug.BuildInfo{Main: debug.Module{Path: "m", Version: "v0.0.0-x"}, Settings: settings("vcs.revision", "aaa", "vcs.modified", "false")},
			linked: Version{Version: "v2.0.0-rc1", Revision: "bbb"},
			want:   Version{Module: "m", Version: "v2.0.0-rc1", Revision: "aaa"},
		},
		{
			name: "no VCS stamp",
			bi:   debug.BuildInfo{Main: debug.Module{Path: mod}},
			want: Version{Module: mod, Version: "(devel)"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromBuildInfo(&tc.bi, tc.linked); got != tc.want {
				t.Errorf("FromBuildInfo =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	cases := []struct {
		v    Version
		want string
	}{
		{Version{Version: "(devel)"}, "(devel)"},
		{Version{Version: "v1.4.0", Revision: "abc"}, "v1.4.0 (revision abc)"},
		{Version{Version: "v0.0.0-20261207031200-b40fe93c1a2d+dirty", Revision: "b40fe93c1a2d", Modified: true},
			"v0.0.0-20261207031200-b40fe93c1a2d+dirty (revision b40fe93c1a2d, modified)"},
	}
	for _, tc := range cases {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// Under `go test` the toolchain stamps the module path and Go version but
// no revision; Read still names a version.
func TestRead(t *testing.T) {
	v := Read(Version{})
	if v.Version == "" || v.Go == "" {
		t.Errorf("Read = %+v: want a version and a Go version", v)
	}
}
