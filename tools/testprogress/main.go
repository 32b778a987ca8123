// Command testprogress runs `go test -json` with the given arguments and
// prints, package by package as each finishes, go test's own line for it
// ("ok  	pkg	12.3s", "FAIL	pkg …", "?   	pkg	[no test files]"), the full
// output of every failed test and of every build error, and, while some
// package runs for long with nothing printed, which packages are still
// running and for how long. Its last line is a plain count,
// "tests: N passed, N failed, N skipped". It exits with go test's status.
//
//	go run ./tools/testprogress -race -count=1 ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events
	Test       string
	Elapsed    float64
	Output     string
}

// quietAfter is how long nothing may be printed before the running
// packages are named.
const quietAfter = 30 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Stderr = stderr // go's own errors (bad flags, no packages)
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	p := newProgress(stdout, start)
	events := make(chan event)
	readErr := make(chan error, 1)
	go func() { // ends when go test closes its output; joined through events and readErr
		defer close(events)
		readErr <- decode(out, events)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				break loop
			}
			p.handle(ev, time.Now())
		case now := <-tick.C:
			p.tick(now)
		}
	}
	if err := <-readErr; err != nil {
		fmt.Fprintln(stderr, "testprogress: reading go test's output:", err)
	}
	code := 0
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(stderr, "testprogress:", err)
			return 2
		}
		code = ee.ExitCode()
	}
	if code == 0 && p.failed() {
		code = 1
	}
	p.summary(time.Now())
	return code
}

// decode sends each JSON event of r on events; a line that is not one (go
// test's output before the stream starts, say) becomes a "raw" event.
func decode(r io.Reader, events chan<- event) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Action == "" {
			events <- event{Action: "raw", Output: sc.Text() + "\n"}
			continue
		}
		events <- ev
	}
	return sc.Err()
}

// progress turns the event stream into the printed lines. Not safe for
// concurrent use.
type progress struct {
	w         io.Writer
	start     time.Time
	lastPrint time.Time
	running   map[string]time.Time   // package → when its tests started
	testOut   map[[2]string][]string // (package, test) → output so far
	pkgOut    map[string][]string    // package → its own output lines so far
	done      int
	counts    map[string]int // pass, fail, skip over tests and subtests
	pkgFailed bool
}

func newProgress(w io.Writer, start time.Time) *progress {
	return &progress{w: w, start: start, lastPrint: start,
		running: map[string]time.Time{}, testOut: map[[2]string][]string{},
		pkgOut: map[string][]string{}, counts: map[string]int{}}
}

func (p *progress) print(now time.Time, s string) {
	io.WriteString(p.w, s)
	p.lastPrint = now
}

func (p *progress) handle(ev event, now time.Time) {
	switch ev.Action {
	case "raw", "build-output":
		p.print(now, ev.Output)
		return
	case "build-fail":
		p.pkgFailed = true
		return
	}
	if ev.Test != "" {
		key := [2]string{ev.Package, ev.Test}
		switch ev.Action {
		case "output":
			p.testOut[key] = append(p.testOut[key], ev.Output)
		case "pass", "skip":
			p.counts[ev.Action]++
			delete(p.testOut, key)
		case "fail":
			p.counts["fail"]++
			// A parent's output holds its failed subtests' "--- FAIL" lines
			// too: print each test's own lines once, when it ends.
			p.print(now, strings.Join(p.testOut[key], ""))
			delete(p.testOut, key)
		}
		return
	}
	switch ev.Action {
	case "start":
		p.running[ev.Package] = now
	case "output":
		p.pkgOut[ev.Package] = append(p.pkgOut[ev.Package], ev.Output)
	case "pass", "fail", "skip":
		if ev.Action == "fail" {
			p.pkgFailed = true
			p.printUnfinished(now, ev.Package)
		}
		delete(p.running, ev.Package)
		p.done++
		var lines []string
		for _, l := range p.pkgOut[ev.Package] {
			// go test prints PASS and the package's own line; on failure
			// everything the package printed outside a test (a panic, say).
			if ev.Action == "fail" || strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "?") || strings.HasPrefix(l, "FAIL") {
				if l != "PASS\n" {
					lines = append(lines, l)
				}
			}
		}
		delete(p.pkgOut, ev.Package)
		p.print(now, strings.Join(lines, ""))
	}
}

// printUnfinished prints the output of pkg's tests that never ended: a
// test binary that panicked or hit -timeout ends its package without a
// "fail" event for the test that was running, and that test's output (the
// panic and every goroutine's stack) is the reason the package failed.
func (p *progress) printUnfinished(now time.Time, pkg string) {
	var keys [][2]string
	for key := range p.testOut {
		if key[0] == pkg {
			keys = append(keys, key)
		}
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[1], b[1]) })
	for _, key := range keys {
		p.print(now, strings.Join(p.testOut[key], ""))
		delete(p.testOut, key)
	}
}

// tick names the running packages when nothing was printed for quietAfter.
func (p *progress) tick(now time.Time) {
	if len(p.running) == 0 || now.Sub(p.lastPrint) < quietAfter {
		return
	}
	pkgs := make([]string, 0, len(p.running))
	for pkg := range p.running {
		pkgs = append(pkgs, pkg)
	}
	slices.SortFunc(pkgs, func(a, b string) int { return p.running[a].Compare(p.running[b]) })
	parts := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		parts[i] = fmt.Sprintf("%s (%ds)", pkg, int(now.Sub(p.running[pkg]).Seconds()))
	}
	p.print(now, fmt.Sprintf("… %ds, %d packages done; running: %s\n",
		int(now.Sub(p.start).Seconds()), p.done, strings.Join(parts, ", ")))
}

func (p *progress) failed() bool { return p.pkgFailed || p.counts["fail"] > 0 }

// summary prints the closing count.
func (p *progress) summary(now time.Time) {
	p.print(now, fmt.Sprintf("go test: %d packages in %ds\ntests: %d passed, %d failed, %d skipped\n",
		p.done, int(now.Sub(p.start).Seconds()), p.counts["pass"], p.counts["fail"], p.counts["skip"]))
}
