package predlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// syncBuf is a log sink for the writer goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func lines(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

// A rotation that fails — the data dir gone, so neither the rename nor a
// new file can be made — drops and counts the records, keeps the process
// going, and the log writes again once the directory is back.
func TestRotationFailureDropsAndRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2026, 12, 6, 23, 59, 0, 0, time.UTC)
	clk := &clock{t: day1}
	var logs syncBuf
	l := &Log{q: make(chan *Record, QueueLen), dir: dir, now: clk.now, done: make(chan struct{}),
		log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := l.open(); err != nil {
		t.Fatal(err)
	}
	go l.run()
	defer l.Close()

	l.Add(&Record{PredictionID: "p1", Endpoint: "home"})
	waitFor(t, "p1 written", func() bool { return l.Written() == 1 })

	// The directory disappears and the day turns: the rotation fails.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	clk.set(day1.Add(2 * time.Minute))
	waitFor(t, "the failure noticed", func() bool { return strings.Contains(logs.String(), "records are dropped") })
	for i := range 5 {
		l.Add(&Record{PredictionID: "lost" + string(rune('0'+i)), Endpoint: "home"})
	}
	waitFor(t, "5 records counted as failed", func() bool { return l.Failed() == 5 })
	if l.Written() != 1 {
		t.Fatalf("written %d while the directory was gone", l.Written())
	}

	// The directory comes back: a new file is opened and written.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file reopened", func() bool { return strings.Contains(logs.String(), "writing again") || fileExists(dir) })
	l.Add(&Record{PredictionID: "p2", Endpoint: "home"})
	waitFor(t, "p2 written", func() bool { return l.Written() == 2 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, filepath.Join(dir, FileName))
	if len(got) != 1 || got[0].PredictionID != "p2" {
		t.Fatalf("file after recovery: %+v, want p2 only", got)
	}
	if l.Failed() != 5 || l.Dropped() != 0 {
		t.Fatalf("failed %d, dropped %d; want 5, 0", l.Failed(), l.Dropped())
	}
}

func fileExists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, FileName))
	return err == nil
}

// A normal rotation renames the day's file and starts a new one.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	day1 := time.Date(2026, 12, 6, 23, 59, 0, 0, time.UTC)
	clk := &clock{t: day1}
	l := &Log{q: make(chan *Record, QueueLen), dir: dir, now: clk.now, done: make(chan struct{}),
		log: slog.New(slog.DiscardHandler)}
	if err := l.open(); err != nil {
		t.Fatal(err)
	}
	go l.run()
	l.Add(&Record{PredictionID: "p1"})
	waitFor(t, "p1 written", func() bool { return l.Written() == 1 })
	clk.set(day1.Add(2 * time.Minute))
	waitFor(t, "rotated", func() bool {
		_, err := os.Stat(filepath.Join(dir, "predictions-2026-12-06.jsonl"))
		return err == nil
	})
	l.Add(&Record{PredictionID: "p2"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := lines(t, filepath.Join(dir, "predictions-2026-12-06.jsonl")); len(got) != 1 || got[0].PredictionID != "p1" {
		t.Fatalf("rotated file: %+v", got)
	}
	if got := lines(t, filepath.Join(dir, FileName)); len(got) != 1 || got[0].PredictionID != "p2" {
		t.Fatalf("new file: %+v", got)
	}
}

// A file that cannot be written (a full disk: /dev/full) drops and counts
// the records and keeps going.
func TestWriteFailureCounted(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full here:", err)
	}
	var logs syncBuf
	l := &Log{q: make(chan *Record, QueueLen), dir: t.TempDir(), now: time.Now, done: make(chan struct{}), f: f,
		day: time.Now().UTC().Format(time.DateOnly), log: slog.New(slog.NewTextHandler(&logs, nil))}
	go l.run()
	for i := range 3 {
		l.Add(&Record{PredictionID: "p" + string(rune('0'+i))})
	}
	waitFor(t, "3 records counted as failed", func() bool { return l.Failed() == 3 })
	_ = l.Close()
	if l.Written() != 0 || !strings.Contains(logs.String(), "no space left") {
		t.Fatalf("written %d, log %q", l.Written(), logs.String())
	}
}

// BenchmarkAdd is a request's cost of logging its prediction, at a
// request rate like a server's at 1,000 rps (one Add a millisecond, so
// that the writer is idle between them): the writer must not be woken by
// each one.
func BenchmarkAdd(b *testing.B) {
	l, err := Open(b.TempDir(), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := &Record{PredictionID: "p", Endpoint: "home", Segment: "all", Arm: "mf@1", Items: []string{"a", "b"}}
	var took time.Duration
	cpu0 := processCPU(b)
	for b.Loop() {
		time.Sleep(time.Millisecond) // the writer goes idle
		start := time.Now()
		l.Add(r)
		took += time.Since(start)
	}
	// The process's CPU time counts the writer's side too (and the
	// benchmark's sleeps, alike for any writer).
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(took.Nanoseconds())/float64(b.N), "ns/add")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Skip("no getrusage:", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
