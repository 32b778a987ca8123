// Package audit records who changed what: every change to the registry,
// endpoints and keys, with the time, the actor (an API key's name, or
// "config", "auto_arms", "guardrail", "cli"), the action, the target and the
// result. Entries go to the store; reads are newest first.
package audit

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"time"
)

// Entry is one audit record.
type Entry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"key"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Result string    `json:"result"`
}

// Store keeps the entries.
type Store interface {
	AppendAudit(ctx context.Context, entry []byte) error
	ListAudit(ctx context.Context, limit int) ([][]byte, error)
}

type actorKey struct{}

// WithActor names who acts in ctx.
func WithActor(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, actorKey{}, name)
}

// Actor is who acts in ctx, "" when unknown (no API keys configured).
func Actor(ctx context.Context) string {
	s, _ := ctx.Value(actorKey{}).(string)
	return s
}

// Log appends entries. A nil *Log records nothing. Safe for concurrent use.
type Log struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
}

// New returns a log over store. log may be nil.
func New(store Store, log *slog.Logger) *Log {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Log{store: store, log: log, now: time.Now}
}

// Record appends one entry; result is "ok" or the error's text. A failure
// to write is logged, never returned: the change itself has happened.
func (l *Log) Record(ctx context.Context, action, target string, err error) {
	if l == nil {
		return
	}
	e := Entry{Time: l.now().UTC(), Actor: Actor(ctx), Action: action, Target: target, Result: "ok"}
	if e.Actor == "" {
		e.Actor = "anonymous"
	}
	if err != nil {
		e.Result = err.Error()
	}
	raw, _ := json.Marshal(e)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if werr := l.store.AppendAudit(wctx, raw); werr != nil {
		l.log.Error("audit entry not written", "action", action, "target", target, "err", werr)
	}
}

// List returns up to limit entries, newest first.
func (l *Log) List(ctx context.Context, limit int) ([]Entry, error) {
	raws, err := l.store.ListAudit(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(raws))
	for _, r := range raws {
		var e Entry
		if json.Unmarshal(r, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}
