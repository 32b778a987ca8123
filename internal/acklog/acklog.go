// Package acklog checks, in tests, that a store acknowledges a write only
// after an fsync that covers it. A kill -9 cannot show that: the kernel's
// page cache survives the process, so a store that never fsyncs passes any
// crash test short of pulling the power. Instead the store reports each
// fsync through a hook, the test records when each write began and when it
// was acknowledged, and Check looks at the order.
package acklog

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

type kind byte

const (
	begin kind = iota
	synced
	ack
)

type event struct {
	kind   kind
	id     string
	weight int
}

// Log is the order in which writes began, fsyncs were reported and writes
// were acknowledged. The zero value is an empty log; it is safe for
// concurrent use.
type Log struct {
	mu  sync.Mutex
	evs []event
}

// Begin records that write id, carrying weight units (events, records),
// is about to be sent. Call it before the write starts.
func (l *Log) Begin(id string, weight int) { l.add(event{kind: begin, id: id, weight: weight}) }

// Synced records an fsync reported by the store, holding weight units of
// the writes under test (0 for a sync of something else). Call it from the
// store's sync hook.
func (l *Log) Synced(weight int) { l.add(event{kind: synced, weight: weight}) }

// Ack records that write id was acknowledged. Call it once the
// acknowledgement arrived (the store call returned, the HTTP 200 was read).
func (l *Log) Ack(id string) { l.add(event{kind: ack, id: id}) }

func (l *Log) add(e event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

// Run makes writers × perEach writes through write, each recorded with
// Begin (weight units) before it and Ack after it: writers goroutines at
// once, each sending its writes one after another, every id unique. A
// writer stops at its first error; Run returns the first error of any, or
// else Check's verdict (one at a time when writers is 1).
func (l *Log) Run(writers, perEach, weight int, write func(id string) error) error {
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perEach {
				id := fmt.Sprintf("%d/%d", w, i)
				l.Begin(id, weight)
				if err := write(id); err != nil {
					errs[w] = fmt.Errorf("write %s: %w", id, err)
					return
				}
				l.Ack(id)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return l.Check(writers == 1)
}

// Totals returns how many syncs holding writes under test were reported
// and their summed weight.
func (l *Log) Totals() (syncs, weight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.evs {
		if e.kind == synced && e.weight > 0 {
			syncs++
			weight += e.weight
		}
	}
	return syncs, weight
}

// Check reports the first acknowledged write that no sync covers: one with
// no sync of weight > 0 between its Begin and its Ack, or one whose Ack
// brings the weight acknowledged so far above the weight synced so far.
// Writes that began but were never acknowledged promise nothing and are not
// checked. Sync weights must count only the writes under test, each unit
// once.
//
// With oneAtATime, the writes were sent one after another (each Ack before
// the next Begin), so the syncs between a write's Begin and Ack are its own:
// their weights must add up to the write's weight exactly, and a sync
// outside every write means a write's sync came after its acknowledgement.
func (l *Log) Check(oneAtATime bool) error {
	l.mu.Lock()
	evs := append([]event(nil), l.evs...)
	l.mu.Unlock()
	type window struct {
		begin, ack int
		weight     int
	}
	wins := map[string]*window{}
	var order []string
	for i, e := range evs {
		switch e.kind {
		case begin:
			if _, dup := wins[e.id]; dup {
				return fmt.Errorf("write %q began twice", e.id)
			}
			wins[e.id] = &window{begin: i, ack: -1, weight: e.weight}
			order = append(order, e.id)
		case ack:
			w, ok := wins[e.id]
			if !ok {
				return fmt.Errorf("write %q acknowledged but never begun", e.id)
			}
			if w.ack >= 0 {
				return fmt.Errorf("write %q acknowledged twice", e.id)
			}
			w.ack = i
		}
	}
	inWindow := make([]bool, len(evs))
	for n, id := range order {
		w := wins[id]
		if w.ack < 0 {
			if oneAtATime && n != len(order)-1 {
				return fmt.Errorf("write %q was never acknowledged but another began after it: not one at a time", id)
			}
			continue
		}
		got, syncs := 0, 0
		for i := w.begin + 1; i < w.ack; i++ {
			e := evs[i]
			if oneAtATime && e.kind == begin {
				return fmt.Errorf("write %q began before %q was acknowledged: not one at a time", e.id, id)
			}
			if e.kind == synced && e.weight > 0 {
				got += e.weight
				syncs++
				inWindow[i] = true
			}
		}
		if syncs == 0 {
			return fmt.Errorf("write %q was acknowledged with no fsync since it began%s", id, around(evs, w.begin, w.ack))
		}
		if oneAtATime && got != w.weight {
			return fmt.Errorf("write %q of weight %d was acknowledged after fsyncs holding %d%s", id, w.weight, got, around(evs, w.begin, w.ack))
		}
	}
	// However writes overlap, what was acknowledged so far was synced so
	// far: a write answered on a sync of other writes (one it merely
	// waited for) is caught here when the window check alone cannot.
	ackedW, syncedW := 0, 0
	for i, e := range evs {
		switch e.kind {
		case synced:
			syncedW += max(e.weight, 0)
		case ack:
			ackedW += wins[e.id].weight
			if ackedW > syncedW {
				return fmt.Errorf("by the acknowledgement of %q, writes of weight %d were acknowledged but fsyncs held only %d%s", e.id, ackedW, syncedW, around(evs, i, i))
			}
		}
	}
	if oneAtATime {
		for i, e := range evs {
			if e.kind == synced && e.weight > 0 && !inWindow[i] {
				return fmt.Errorf("an fsync holding %d came outside every write (after its acknowledgement?)%s", e.weight, around(evs, i, i))
			}
		}
	}
	return nil
}

// around shows the events near [from, to] for an error message.
func around(evs []event, from, to int) string {
	from, to = max(from-3, 0), min(to+4, len(evs))
	var b strings.Builder
	b.WriteString(":")
	for i := from; i < to; i++ {
		e := evs[i]
		switch e.kind {
		case begin:
			fmt.Fprintf(&b, "\n\t%d begin %q (%d)", i, e.id, e.weight)
		case synced:
			fmt.Fprintf(&b, "\n\t%d fsync (%d)", i, e.weight)
		case ack:
			fmt.Fprintf(&b, "\n\t%d ack %q", i, e.id)
		}
	}
	return b.String()
}
