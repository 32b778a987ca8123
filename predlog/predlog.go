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
	"io"
	"log/slog"
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
	// Pinned: a QA caller pinned the arm; the prediction counts nowhere.
	Pinned bool `json:"pinned,omitempty"`
	// Holdout: the endpoint's holdout arm served a held-out request; the
	// prediction is counted in the holdout's segment, not the bandit's.
	Holdout bool     `json:"holdout,omitempty"`
	Items   []string `json:"items"`
	// Shadows are what the endpoint's shadows answered for a shadowed
	// prediction (whose line is written once they have).
	Shadows []Shadow `json:"shadows,omitempty"`
}

// Shadow is one shadow's answer for a prediction: its list, or why it has
// none.
type Shadow struct {
	Arm       string   `json:"arm"`
	Items     []string `json:"items,omitempty"`
	LatencyMs float64  `json:"latency_ms,omitempty"`
	// Error is the call's failure; Dropped says the call was skipped
	// because every shadow worker was busy.
	Error   string `json:"error,omitempty"`
	Dropped bool   `json:"dropped,omitempty"`
}

// Log appends records to a file. Create it with Open; it is safe for
// concurrent use. Add must not be called after Close.
//
// The file rotates at midnight UTC: the day's file is renamed
// predictions-YYYY-MM-DD.jsonl and a new one started; rotated files older
// than the retention are deleted. A failure to write, rotate or reopen the
// file (the data dir gone, the disk full) never stops the process: the
// records that could not be written are dropped and counted (Failed), the
// failure is logged once, and the file is reopened as soon as it can be.
type Log struct {
	q         chan *Record
	f         *os.File // nil while the file cannot be opened
	dir       string
	day       string
	retention time.Duration
	now       func() time.Time
	log       *slog.Logger
	done      chan struct{}
	closed    sync.Once
	dropped   atomic.Uint64
	failed    atomic.Uint64
	written   atomic.Uint64
	failing   bool // the last write or open failed; only the writer goroutine uses it
}

// QueueLen bounds the records waiting to be written.
const QueueLen = 1 << 14

// flushEvery bounds how long a record waits in the write buffer.
const flushEvery = 200 * time.Millisecond

// drainEvery is how often the writer takes the queued records: the queue
// holds QueueLen, enough for drainEvery at over 300,000 predictions a
// second.
const drainEvery = 50 * time.Millisecond

// Open opens (appending) the log in dir, keeping rotated days for
// retention (0 keeps them all). log, which may be nil, gets write failures.
func Open(dir string, retention time.Duration, log *slog.Logger) (*Log, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Log{q: make(chan *Record, QueueLen), dir: dir, retention: retention, now: time.Now, log: log, done: make(chan struct{})}
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

// sink is where the write buffer goes: the file, or nowhere while there is
// none (no record is encoded then).
func (l *Log) sink() io.Writer {
	if l.f == nil {
		return io.Discard
	}
	return l.f
}

// trouble notes a failure: logged when the log starts failing, not for
// every record after.
func (l *Log) trouble(what string, err error) {
	if !l.failing {
		l.log.Error("prediction log: "+what+"; records are dropped until it works again", "dir", l.dir, "err", err)
	}
	l.failing = true
}

// recovered notes that a write went through again.
func (l *Log) recovered() {
	if l.failing {
		l.log.Info("prediction log: writing again", "dir", l.dir, "dropped_so_far", l.failed.Load())
	}
	l.failing = false
}

// rotate starts a new file when the day has changed, and deletes rotated
// files past the retention. The write buffer is empty.
func (l *Log) rotate(w *bufio.Writer) {
	now := l.now().UTC()
	if now.Format(time.DateOnly) == l.day {
		return
	}
	if l.f != nil {
		_ = l.f.Sync()
		_ = l.f.Close()
		l.f = nil
		day, _ := time.Parse(time.DateOnly, l.day)
		if err := os.Rename(filepath.Join(l.dir, FileName), filepath.Join(l.dir, rotatedName(day))); err != nil {
			l.trouble("rotating the file", err)
		}
	}
	if err := l.open(); err != nil {
		l.trouble("starting a new file", err)
	}
	w.Reset(l.sink())
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

// Failed is the number of records dropped because the file could not be
// written, rotated or reopened.
func (l *Log) Failed() uint64 { return l.failed.Load() }

// Written is the number of records written to the file.
func (l *Log) Written() uint64 { return l.written.Load() }

func (l *Log) run() {
	defer close(l.done)
	w := bufio.NewWriterSize(l.sink(), 64<<10)
	enc := json.NewEncoder(w)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var buffered uint64 // records in w since its last flush
	flush := func() {
		if buffered == 0 {
			return
		}
		if err := w.Flush(); err != nil {
			l.failed.Add(buffered)
			l.trouble("writing", err)
			w.Reset(l.sink()) // drop what could not be written
		} else {
			l.written.Add(buffered)
			l.recovered()
		}
		buffered = 0
	}
	drain := time.NewTicker(drainEvery)
	defer drain.Stop()
	for {
		select {
		case <-drain.C:
			// Take what queued since the last tick. The writer does not
			// wait on the queue itself, so that a request's Add never
			// wakes it: at 1,000 rps that was a goroutine wake-up per
			// request, on the cores the requests need.
			for more := true; more; {
				select {
				case r, ok := <-l.q:
					if !ok {
						flush()
						return
					}
					l.write(enc, w, r, &buffered)
				default:
					more = false
				}
			}
		case <-t.C:
			flush()
			l.rotate(w)
			if l.f == nil {
				if err := l.open(); err == nil {
					w.Reset(l.f)
					l.recovered()
				}
			}
		}
	}
}

// write encodes r into w, counting it in buffered, or counts it lost.
func (l *Log) write(enc *json.Encoder, w *bufio.Writer, r *Record, buffered *uint64) {
	if l.f == nil {
		l.failed.Add(1)
		return
	}
	if err := enc.Encode(r); err != nil {
		// A full buffer whose flush failed: it and r are lost.
		l.failed.Add(*buffered + 1)
		*buffered = 0
		l.trouble("writing", err)
		w.Reset(l.sink())
		return
	}
	*buffered++
}

// Close writes what is queued and closes the file.
func (l *Log) Close() error {
	var err error
	l.closed.Do(func() {
		close(l.q)
		<-l.done
		if l.f == nil {
			return
		}
		if e := l.f.Sync(); e != nil {
			err = e
		}
		if e := l.f.Close(); e != nil && err == nil {
			err = e
		}
	})
	return err
}
