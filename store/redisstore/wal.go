package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The write-ahead log is a directory of segment files wal-<seq>.log, seq
// a 16-digit hex number, oldest first. A segment is the 8-byte header
// walHeader, then records:
//
//	length  uint32 little-endian, of payload
//	crc     uint32 little-endian, CRC-32C (Castagnoli) of payload
//	payload length bytes (see encodeBatch)
//
// Appends go to the newest segment and are fsynced before they are
// acknowledged; concurrent appenders share one fsync (group commit). The
// replayer reads records in order from the oldest segment, up to what is
// fsynced, and deletes a segment once every record in it is confirmed in
// Redis. Confirmation within a segment is kept in memory only: after a
// restart, a partly confirmed segment is replayed from its start again,
// which the batch ids make harmless.
const (
	walHeader    = "MGWAL01\n"
	walRecHeader = 8
	walMaxRecord = 64 << 20 // a record larger than this is corrupt
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrWALFull is returned by writes that had to go to the write-ahead log
// while it holds Options.WALMaxBytes already. Nothing was recorded; the
// caller answers 503 and the client retries.
var ErrWALFull = errors.New("redisstore: write-ahead log full")

// errWALClosed is returned by appends after Close.
var errWALClosed = errors.New("redisstore: write-ahead log closed")

type segment struct {
	seq    uint64
	path   string
	w      *os.File // append handle; nil once sealed and fully synced, or for segments found at open
	r      *os.File // read handle of the replayer, opened lazily
	size   int64    // bytes written, header included
	synced int64    // bytes known durable
	recs   int      // records written
	srecs  int      // records known durable
	sealed bool     // no more appends: a newer segment exists or it was found at open
}

type wal struct {
	dir    string
	max    int64
	segMax int64
	lock   *os.File
	onSync func(records int) // see Options.OnWALSync; may be nil

	// syncMu serializes fsyncs with each other and with closing or removing
	// a segment; it is always taken before mu.
	syncMu  sync.Mutex
	mu      sync.Mutex
	segs    []*segment // oldest first; only segs[len-1] may be unsealed
	nextSeq uint64     // seq of the next segment to create
	total   int64      // bytes of every segment file
	off     int64      // replay cursor: offset of the next unconfirmed record in segs[0]
	recs    int        // records not yet confirmed
	bytes   int64      // their bytes, headers included
	broken  error      // a failed write or fsync: the log refuses appends from then on
	closed  bool
}

// openWAL opens (creating) the log in dir, truncates a torn tail, and calls
// fn with every record still in it, in order. fn's error aborts the open.
// onSync, when not nil, is called after every fsync that makes appended
// records durable, before their appends return.
func openWAL(dir string, maxBytes int64, onSync func(records int), fn func(payload []byte) error) (*wal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create WAL dir: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, err
	}
	w := &wal{dir: dir, max: maxBytes, lock: lock, off: int64(len(walHeader)), onSync: onSync}
	w.segMax = min(max(maxBytes/8, 64<<10), 16<<20)
	if err := w.load(fn); err != nil {
		lock.Close()
		return nil, err
	}
	return w, nil
}

func segName(seq uint64) string { return fmt.Sprintf("wal-%016x.log", seq) }

func (w *wal) load(fn func([]byte) error) error {
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("read WAL dir: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "wal-") || !strings.HasSuffix(name, ".log") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "wal-"), ".log"), 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		w.nextSeq = seq + 1
		path := filepath.Join(w.dir, segName(seq))
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read WAL segment: %w", err)
		}
		if len(data) < len(walHeader) || string(data[:len(walHeader)]) != walHeader {
			if len(data) > len(walHeader) {
				return fmt.Errorf("WAL segment %s: not a modelgate WAL file", path)
			}
			// Created but never written to: a crash between create and
			// the first append.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove empty WAL segment: %w", err)
			}
			continue
		}
		off, n := int64(len(walHeader)), 0
		for {
			payload, next, ok := parseRecord(data, off)
			if !ok {
				break
			}
			if err := fn(payload); err != nil {
				return fmt.Errorf("WAL segment %s at %d: %w", path, off, err)
			}
			off, n = next, n+1
		}
		if off < int64(len(data)) {
			// A record that was being written when the process died was
			// never acknowledged: drop it and whatever follows.
			if err := truncateFile(path, off); err != nil {
				return err
			}
		}
		if n == 0 {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove empty WAL segment: %w", err)
			}
			continue
		}
		w.segs = append(w.segs, &segment{seq: seq, path: path, size: off, synced: off, recs: n, srecs: n, sealed: true})
		w.total += off
		w.recs += n
		w.bytes += off - int64(len(walHeader))
	}
	return nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("truncate WAL tail: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate WAL tail: %w", err)
	}
	return f.Sync()
}

// parseRecord returns the payload of the record at off and the offset
// after it, or ok=false when there is no whole, intact record there.
func parseRecord(data []byte, off int64) (payload []byte, next int64, ok bool) {
	if int64(len(data))-off < walRecHeader {
		return nil, 0, false
	}
	n := int64(binary.LittleEndian.Uint32(data[off:]))
	sum := binary.LittleEndian.Uint32(data[off+4:])
	if n > walMaxRecord || int64(len(data))-off-walRecHeader < n {
		return nil, 0, false
	}
	p := data[off+walRecHeader : off+walRecHeader+n]
	if crc32.Checksum(p, castagnoli) != sum {
		return nil, 0, false
	}
	return p, off + walRecHeader + n, true
}

func frame(payload []byte) []byte {
	rec := make([]byte, walRecHeader+len(payload))
	binary.LittleEndian.PutUint32(rec, uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(payload, castagnoli))
	copy(rec[walRecHeader:], payload)
	return rec
}

// append writes one record and returns once it is on disk.
func (w *wal) append(payload []byte) error {
	rec := frame(payload)
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return errWALClosed
	case w.broken != nil:
		w.mu.Unlock()
		return w.broken
	}
	s := w.tail()
	need := int64(len(rec))
	if s == nil || (s.size+need > w.segMax && s.size > int64(len(walHeader))) {
		need += int64(len(walHeader))
		s = nil
	}
	if w.total+need > w.max {
		w.mu.Unlock()
		return ErrWALFull
	}
	if s == nil {
		var err error
		if s, err = w.newSegment(); err != nil {
			w.mu.Unlock()
			return err
		}
	}
	if _, err := s.w.Write(rec); err != nil {
		// The file may now end in part of a record; refuse further
		// appends rather than bury it (a reopen truncates it).
		w.broken = fmt.Errorf("redisstore: WAL write: %w", err)
		w.mu.Unlock()
		return w.broken
	}
	s.size += int64(len(rec))
	s.recs++
	w.total += int64(len(rec))
	w.recs++
	w.bytes += int64(len(rec))
	end := s.size
	w.mu.Unlock()
	return w.syncTo(s, end)
}

// tail is the segment appends go to, or nil when a new one is needed.
func (w *wal) tail() *segment {
	if len(w.segs) == 0 {
		return nil
	}
	if s := w.segs[len(w.segs)-1]; !s.sealed {
		return s
	}
	return nil
}

// newSegment creates the next segment and makes its directory entry
// durable. Called with mu held; segment creation is rare (rotation).
func (w *wal) newSegment() (*segment, error) {
	seq := w.nextSeq
	path := filepath.Join(w.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create WAL segment: %w", err)
	}
	if _, err := f.Write([]byte(walHeader)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create WAL segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	w.nextSeq++
	if t := w.tail(); t != nil {
		t.sealed = true
		if t.synced == t.size {
			t.w.Close()
			t.w = nil
		}
	}
	s := &segment{seq: seq, path: path, w: f, size: int64(len(walHeader))}
	w.segs = append(w.segs, s)
	w.total += s.size
	return s, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync WAL dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync WAL dir: %w", err)
	}
	return nil
}

// syncTo returns once s is durable up to end. Whoever holds syncMu fsyncs
// everything written so far, so appenders queued behind it usually find
// their record already synced.
func (w *wal) syncTo(s *segment, end int64) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	if s.synced >= end {
		w.mu.Unlock()
		return nil
	}
	if w.broken != nil {
		w.mu.Unlock()
		return w.broken
	}
	f, target, recs := s.w, s.size, s.recs
	w.mu.Unlock()
	err := f.Sync()
	w.mu.Lock()
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty
		// pages; nothing written since the last good fsync can be trusted.
		w.broken = fmt.Errorf("redisstore: WAL fsync: %w", err)
		err = w.broken
		w.mu.Unlock()
		return err
	}
	s.synced = target
	n := recs - s.srecs
	s.srecs = recs
	if s.sealed && s.synced == s.size && s.w != nil {
		s.w.Close()
		s.w = nil
	}
	w.mu.Unlock()
	// Still holding syncMu: every append this fsync covers is waiting.
	if w.onSync != nil && n > 0 {
		w.onSync(n)
	}
	return nil
}

// next returns the oldest unconfirmed, durable record, or ok=false when
// there is none. Only the replayer calls next and confirm.
func (w *wal) next() (payload []byte, size int64, ok bool, err error) {
	for {
		w.mu.Lock()
		if len(w.segs) == 0 || w.closed {
			w.mu.Unlock()
			return nil, 0, false, nil
		}
		s, off := w.segs[0], w.off
		if off < s.synced {
			w.mu.Unlock()
			p, n, err := w.read(s, off)
			return p, n, err == nil, err
		}
		done := off >= s.size && (len(w.segs) > 1 || s.synced == s.size)
		w.mu.Unlock()
		if !done {
			return nil, 0, false, nil
		}
		if !w.dropHead(s) {
			return nil, 0, false, nil
		}
	}
}

// read reads the record at off of s, outside the locks: only the replayer
// reads, and bytes below s.synced never change.
func (w *wal) read(s *segment, off int64) ([]byte, int64, error) {
	if s.r == nil {
		f, err := os.Open(s.path)
		if err != nil {
			return nil, 0, fmt.Errorf("open WAL segment: %w", err)
		}
		s.r = f
	}
	var h [walRecHeader]byte
	if err := readAt(s.r, h[:], off); err != nil {
		return nil, 0, err
	}
	n := int64(binary.LittleEndian.Uint32(h[:]))
	if n > walMaxRecord {
		return nil, 0, fmt.Errorf("read WAL record at %s:%d: bad length %d", s.path, off, n)
	}
	p := make([]byte, n)
	if err := readAt(s.r, p, off+walRecHeader); err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, 0, fmt.Errorf("read WAL record at %s:%d: checksum mismatch", s.path, off)
	}
	return p, walRecHeader + n, nil
}

func readAt(f *os.File, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read WAL record: %w", err)
}

// confirm marks the record returned by next as applied.
func (w *wal) confirm(size int64) {
	w.mu.Lock()
	w.off += size
	w.recs--
	w.bytes -= size
	w.mu.Unlock()
}

// dropHead deletes s, the oldest segment, once every record in it is
// confirmed and no append can reach it any more. It reports whether it did.
func (w *wal) dropHead(s *segment) bool {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) == 0 || w.segs[0] != s || w.off < s.size || s.synced < s.size {
		return false
	}
	// With no newer segment, s is the tail: appends would go here, so it
	// is closed and a later append starts a fresh segment.
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
	if s.r != nil {
		s.r.Close()
		s.r = nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		// Leave it: it would be replayed (harmlessly) after a restart.
		return false
	}
	s.sealed = true
	w.segs = w.segs[1:]
	w.total -= s.size
	w.off = int64(len(walHeader))
	return true
}

// backlog reports the records not yet confirmed and their bytes.
func (w *wal) backlog() (int, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.recs, w.bytes
}

// close closes the files. Unconfirmed records stay for the next open.
func (w *wal) close() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var first error
	for _, s := range w.segs {
		if s.w != nil {
			if err := s.w.Sync(); err != nil && first == nil {
				first = err
			}
			if err := s.w.Close(); err != nil && first == nil {
				first = err
			}
			s.w = nil
		}
		if s.r != nil {
			s.r.Close()
			s.r = nil
		}
	}
	if err := w.lock.Close(); err != nil && first == nil {
		first = err
	}
	return first
}
