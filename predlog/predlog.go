// Package predlog is the prediction log: one JSON line per served
// prediction (its id, time, endpoint, segment, arm, the propensity with which
// the policy chose that arm, and the items), appended to a file in the data
// dir for off-policy evaluation. Writes never block the request path: records
// go through a bounded queue to one writer goroutine, and a record that finds
// the queue full is dropped and counted.
package predlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FileName is the log's name in the data dir.
const FileName = "predictions.jsonl"

// Record is one line of the log.
type Record struct {
	PredictionID string    `json:"prediction_id"`
	Time         time.Time `json:"time"`
	Endpoint     string    `json:"endpoint"`
	Segment      string    `json:"segment"`
	Arm          string    `json:"arm"`
	Propensity   float64   `json:"propensity"`
	Fallback     bool      `json:"fallback,omitempty"`
	Sticky       bool      `json:"sticky,omitempty"`
	Items        []string  `json:"items"`
}

// Log appends records to a file. Create it with Open; it is safe for
// concurrent use. Add must not be called after Close.
//
// The file rotates at midnight UTC: the day's file is renamed
// predictions-YYYY-MM-DD.jsonl and a new one started; rotated files older
// than the retention are deleted.
type Log struct {
	q         chan *Record
	f         *os.File
	dir       string
	day       string
	retention time.Duration
	now       func() time.Time
	done      chan struct{}
	closed    sync.Once
	dropped   atomic.Uint64
	written   atomic.Uint64
}

// QueueLen bounds the records waiting to be written.
const QueueLen = 1 << 14

// flushEvery bounds how long a record waits in the write buffer.
const flushEvery = 200 * time.Millisecond

// Open opens (appending) the log in dir, keeping rotated days for
// retention (0 keeps them all).
func Open(dir string, retention time.Duration) (*Log, error) {
	l := &Log{q: make(chan *Record, QueueLen), dir: dir, retention: retention, now: time.Now, done: make(chan struct{})}
	if err := l.open(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

func (l *Log) open() error {
	path := filepath.Join(l.dir, FileName)
	// A file left from an earlier day is rotated before it is appended to.
	if st, err := os.Stat(path); err == nil && st.ModTime().UTC().Format(time.DateOnly) != l.now().UTC().Format(time.DateOnly) {
		_ = os.Rename(path, filepath.Join(l.dir, rotatedName(st.ModTime())))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("prediction log: %w", err)
	}
	l.f, l.day = f, l.now().UTC().Format(time.DateOnly)
	return nil
}

func rotatedName(day time.Time) string {
	return "predictions-" + day.UTC().Format(time.DateOnly) + ".jsonl"
}

// rotate starts a new file when the day has changed, and deletes rotated
// files past the retention.
func (l *Log) rotate(w *bufio.Writer) {
	now := l.now().UTC()
	if now.Format(time.DateOnly) == l.day {
		return
	}
	_ = w.Flush()
	_ = l.f.Sync()
	_ = l.f.Close()
	day, _ := time.Parse(time.DateOnly, l.day)
	_ = os.Rename(filepath.Join(l.dir, FileName), filepath.Join(l.dir, rotatedName(day)))
	if err := l.open(); err != nil {
		// Keep going into a fresh file descriptor of the same name.
		l.f, _ = os.OpenFile(filepath.Join(l.dir, FileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	w.Reset(l.f)
	if l.retention > 0 {
		old, _ := filepath.Glob(filepath.Join(l.dir, "predictions-*.jsonl"))
		for _, p := range old {
			d, err := time.Parse(time.DateOnly, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "predictions-"), ".jsonl"))
			if err == nil && now.Sub(d) > l.retention+24*time.Hour {
				_ = os.Remove(p)
			}
		}
	}
}

// Add queues a record; when the queue is full the record is dropped.
func (l *Log) Add(r *Record) {
	select {
	case l.q <- r:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is the number of records dropped because the queue was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Written is the number of records written.
func (l *Log) Written() uint64 { return l.written.Load() }

func (l *Log) run() {
	defer close(l.done)
	w := bufio.NewWriterSize(l.f, 64<<10)
	enc := json.NewEncoder(w)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case r, ok := <-l.q:
			if !ok {
				_ = w.Flush()
				return
			}
			if enc.Encode(r) == nil {
				l.written.Add(1)
			}
		case <-t.C:
			_ = w.Flush()
			l.rotate(w)
		}
	}
}

// Close writes what is queued and closes the file.
func (l *Log) Close() error {
	var err error
	l.closed.Do(func() {
		close(l.q)
		<-l.done
		if e := l.f.Sync(); e != nil {
			err = e
		}
		if e := l.f.Close(); e != nil && err == nil {
			err = e
		}
	})
	return err
}
