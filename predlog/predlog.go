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
// concurrent use.
type Log struct {
	q       chan *Record
	f       *os.File
	done    chan struct{}
	closed  sync.Once
	dropped atomic.Uint64
	written atomic.Uint64
}

// QueueLen bounds the records waiting to be written.
const QueueLen = 1 << 14

// flushEvery bounds how long a record waits in the write buffer.
const flushEvery = 200 * time.Millisecond

// Open opens (appending) the log in dir.
func Open(dir string) (*Log, error) {
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("prediction log: %w", err)
	}
	l := &Log{q: make(chan *Record, QueueLen), f: f, done: make(chan struct{})}
	go l.run()
	return l, nil
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
