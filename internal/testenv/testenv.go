// Package testenv is how tests ask for what they need from the machine: a
// redis-server, Chromium, the ONNX Runtime library, promtool, curl,
// strace. Without it a test skips on a developer's machine but fails under
// CI, where .ci/run installs everything: a missing dependency must not turn
// a CI run green by skipping the tests that need it.
//
// Skips for -short are a different matter and stay plain t.Skip calls.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CI reports whether the tests run under CI: the environment variable CI
// is set to anything but "", "0" or "false" (.ci/run sets CI=1).
func CI() bool { return isCI(os.Getenv("CI")) }

func isCI(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "false":
		return false
	}
	return true
}

// SkipOrFail reports a missing dependency: it skips t, or under CI fails
// it, with the formatted message.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	skipOrFail(t, CI(), fmt.Sprintf(format, args...))
}

// tb is the part of testing.TB skipOrFail uses.
type tb interface {
	Helper()
	Fatal(args ...any)
	Skip(args ...any)
}

func skipOrFail(t tb, ci bool, msg string) {
	t.Helper()
	if ci {
		t.Fatal(msg + " (CI is set: every test dependency must be installed)")
		return
	}
	t.Skip(msg)
}

// LookPath returns the path of the first of names found on PATH. When none
// is, it calls SkipOrFail with install, which says how to get it.
func LookPath(t testing.TB, install string, names ...string) string {
	t.Helper()
	if p, ok := lookPath(names); ok {
		return p
	}
	SkipOrFail(t, "%s not on PATH (%s)", strings.Join(names, " or "), install)
	return ""
}

// Optional is LookPath for a tool only some checks of a test need: when
// none of names is on PATH it logs that those checks are left out and
// returns false, or under CI fails the test.
func Optional(t testing.TB, install string, names ...string) (string, bool) {
	t.Helper()
	if p, ok := lookPath(names); ok {
		return p, true
	}
	msg := fmt.Sprintf("%s not on PATH (%s)", strings.Join(names, " or "), install)
	if CI() {
		t.Fatal(msg + " (CI is set: every test dependency must be installed)")
	}
	t.Log(msg + "; leaving out the checks that need it")
	return "", false
}

func lookPath(names []string) (string, bool) {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// WaitFor polls cond every 20 ms until it holds, and fails the test when
// it does not within d.
func WaitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
