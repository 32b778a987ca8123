package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestIsCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, " FALSE ": false,
		"1": true, "true": true, "yes": true} {
		if got := isCI(v); got != want {
			t.Errorf("isCI(%q) = %v, want %v", v, got, want)
		}
	}
}

// recorder stands in for a *testing.T to see which of Skip and Fatal ran.
type recorder struct{ skipped, failed string }

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }

func TestSkipOrFail(t *testing.T) {
	for _, ci := range []bool{false, true} {
		t.Run(fmt.Sprint("CI=", ci), func(t *testing.T) {
			var r recorder
			skipOrFail(&r, ci, "redis-server not on PATH")
			if ci && (r.failed == "" || r.skipped != "") {
				t.Fatalf("under CI: failed %q, skipped %q; want a failure", r.failed, r.skipped)
			}
			if !ci && (r.skipped != "redis-server not on PATH" || r.failed != "") {
				t.Fatalf("outside CI: failed %q, skipped %q; want a skip", r.failed, r.skipped)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool-b")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if got := LookPath(t, "unused", "tool-a", "tool-b"); got != exe {
		t.Fatalf("LookPath = %q, want %q", got, exe)
	}
	if got, ok := Optional(t, "unused", "tool-a", "tool-b"); !ok || got != exe {
		t.Fatalf("Optional = %q, %v; want %q", got, ok, exe)
	}
	if !CI() {
		if got, ok := Optional(t, "unused", "tool-a"); ok {
			t.Fatalf("Optional found the missing tool-a at %q", got)
		}
	}
}
