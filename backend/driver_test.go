package backend_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/fault"
)

func TestDrivers(t *testing.T) {
	s := backend.NewDrivers(backendtest.Driver{Name: "b"}, backendtest.Driver{Name: "a"})
	if got := s.Types(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Types = %v, want [a b]", got)
	}
	if d, ok := s.Lookup("b"); !ok || d.Type() != "b" {
		t.Errorf("Lookup(b) = %v, %v", d, ok)
	}
	for _, set := range []*backend.Drivers{s, nil} {
		_, _, err := set.Parse([]byte(`{"type": "c"}`))
		if f := fault.As(err); f == nil || f.Code != "unsupported_backend" || f.Field != "backend.type" || !strings.Contains(f.Message, `"c" is not available`) {
			t.Errorf("Parse of an unknown type = %v", err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("two drivers of one type: want a panic")
		}
	}()
	backend.NewDrivers(backendtest.Driver{Name: "a"}, backendtest.Driver{Name: "a"})
}

func TestListVersionDirs(t *testing.T) {
	base := t.TempDir()
	for _, v := range []string{"1", "2", "10", "3", "tmp", "4"} {
		if err := os.MkdirAll(filepath.Join(base, v), 0o755); err != nil {
			t.Fatal(err)
		}
		if v != "4" { // 4 is still being copied: no model file yet
			if err := os.WriteFile(filepath.Join(base, v, "model.json"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := backend.ListVersionDirs(filepath.Join(base, "2"), "2", "model.json")
	if err != nil || !slices.Equal(got, []string{"1", "2", "3", "10"}) {
		t.Errorf("ListVersionDirs = %v, %v; want [1 2 3 10]", got, err)
	}
	if _, err := backend.ListVersionDirs(filepath.Join(base, "2"), "v2", "model.json"); err == nil {
		t.Error("a version not named after its directory: want an error")
	}
	if got := backend.VersionDir(filepath.Join(base, "2"), "3"); got != filepath.Join(base, "3") {
		t.Errorf("VersionDir = %s", got)
	}
}
