package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	type step struct {
		ev   *event
		tick bool
		s    int // seconds after t0
	}
	ev := func(s int, action, pkg, test, out string) step {
		return step{ev: &event{Action: action, Package: pkg, Test: test, Output: out}, s: s}
	}
	tick := func(s int) step { return step{tick: true, s: s} }
	cases := []struct {
		name   string
		steps  []step
		want   string // the whole output
		failed bool
	}{
		{
			name: "passing packages, one line each as it ends",
			steps: []step{
				ev(0, "start", "m/a", "", ""), ev(0, "start", "m/b", "", ""),
				ev(1, "run", "m/a", "TestX", ""), ev(1, "output", "m/a", "TestX", "=== RUN   TestX\n"),
				ev(1, "output", "m/a", "TestX", "--- PASS: TestX (0.00s)\n"), ev(1, "pass", "m/a", "TestX", ""),
				ev(2, "output", "m/b", "", "?   \tm/b\t[no test files]\n"), ev(2, "skip", "m/b", "", ""),
				ev(3, "output", "m/a", "", "PASS\n"), ev(3, "output", "m/a", "", "ok  \tm/a\t3.0s\n"), ev(3, "pass", "m/a", "", ""),
			},
			want: "?   \tm/b\t[no test files]\nok  \tm/a\t3.0s\ngo test: 2 packages in 9s\ntests: 1 passed, 0 failed, 0 skipped\n",
		},
		{
			name: "a failed test's output and go test's FAIL lines",
			steps: []step{
				ev(0, "start", "m/a", "", ""),
				ev(1, "output", "m/a", "TestY", "=== RUN   TestY\n"), ev(1, "output", "m/a", "TestY", "    a_test.go:9: got 1, want 2\n"),
				ev(1, "output", "m/a", "TestY", "--- FAIL: TestY (0.00s)\n"), ev(1, "fail", "m/a", "TestY", ""),
				ev(1, "output", "m/a", "TestZ", "--- SKIP: TestZ\n"), ev(1, "skip", "m/a", "TestZ", ""),
				ev(2, "output", "m/a", "", "FAIL\n"), ev(2, "output", "m/a", "", "FAIL\tm/a\t2.0s\n"), ev(2, "fail", "m/a", "", ""),
			},
			want: "=== RUN   TestY\n    a_test.go:9: got 1, want 2\n--- FAIL: TestY (0.00s)\nFAIL\nFAIL\tm/a\t2.0s\n" +
				"go test: 1 packages in 9s\ntests: 0 passed, 1 failed, 1 skipped\n",
			failed: true,
		},
		{
			name: "a test running when its binary timed out: its output, the panic, with the package's",
			steps: []step{
				ev(0, "start", "m/a", "", ""),
				ev(1, "output", "m/a", "TestDone", "=== RUN   TestDone\n"), ev(1, "pass", "m/a", "TestDone", ""),
				ev(1, "output", "m/a", "TestHang", "=== RUN   TestHang\n"),
				ev(600, "output", "m/a", "TestHang", "panic: test timed out after 10m0s\n"),
				ev(600, "output", "m/a", "", "FAIL\tm/a\t600.0s\n"), ev(600, "fail", "m/a", "", ""),
			},
			want: "=== RUN   TestHang\npanic: test timed out after 10m0s\nFAIL\tm/a\t600.0s\n" +
				"go test: 1 packages in 9s\ntests: 1 passed, 0 failed, 0 skipped\n",
			failed: true,
		},
		{
			name: "a quiet while names the running packages, once per quiet period",
			steps: []step{
				ev(0, "start", "m/slow", "", ""), ev(5, "start", "m/b", "", ""),
				tick(29), tick(31), tick(45),
				ev(50, "output", "m/b", "", "ok  \tm/b\t45s\n"), ev(50, "pass", "m/b", "", ""),
				tick(79), tick(81),
			},
			want: "… 31s, 0 packages done; running: m/slow (31s), m/b (26s)\nok  \tm/b\t45s\n… 81s, 1 packages done; running: m/slow (81s)\n" +
				"go test: 1 packages in 9s\ntests: 0 passed, 0 failed, 0 skipped\n",
		},
		{
			name:   "build errors are printed as they come",
			steps:  []step{ev(0, "raw", "", "", "# m/c\n"), {ev: &event{Action: "build-output", ImportPath: "m/c", Output: "c.go:1: syntax error\n"}}, {ev: &event{Action: "build-fail", ImportPath: "m/c"}}},
			want:   "# m/c\nc.go:1: syntax error\ngo test: 0 packages in 9s\ntests: 0 passed, 0 failed, 0 skipped\n",
			failed: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			p := newProgress(&b, t0)
			for _, s := range tc.steps {
				if s.tick {
					p.tick(at(s.s))
				} else {
					p.handle(*s.ev, at(s.s))
				}
			}
			p.summary(at(9))
			if got := b.String(); got != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tc.want)
			}
			if p.failed() != tc.failed {
				t.Errorf("failed() = %v, want %v", p.failed(), tc.failed)
			}
		})
	}
}

// decode passes JSON events through and copies other lines.
func TestDecode(t *testing.T) {
	in := "not json\n" + `{"Action":"start","Package":"m/a"}` + "\n"
	events := make(chan event, 4)
	if err := decode(strings.NewReader(in), events); err != nil {
		t.Fatal(err)
	}
	close(events)
	var got []event
	for ev := range events {
		got = append(got, ev)
	}
	if len(got) != 2 || got[0].Action != "raw" || got[0].Output != "not json\n" || got[1].Action != "start" || got[1].Package != "m/a" {
		t.Fatalf("events %+v", got)
	}
}
