package redislist

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/fault"
)

// List is one version of the redis backend: the lookup of a request's
// precomputed list. Make it with Driver.Load; it is safe for concurrent
// use. Close releases its share of the connection.
type List struct {
	user, fallback template // fallback is empty without default_key
	format         string
	script         *redis.Script

	conn      *conn
	release   func()
	closeOnce sync.Once
}

func newList(s *Spec, model, version string, script *redis.Script) (*List, error) {
	if s.url() == "" {
		return nil, fault.Field("backend.url", "invalid_model", "the version has no url and the server runs without --redis-url")
	}
	user, err := parseTemplate(s.Key, model, version, true)
	if err != nil {
		return nil, fault.Field("backend.key", "invalid_backend", "%v", err)
	}
	fallback, err := parseTemplate(s.DefaultKey, model, version, false)
	if err != nil {
		return nil, fault.Field("backend.default_key", "invalid_backend", "%v", err)
	}
	return &List{user: user, fallback: fallback, format: s.format(), script: script}, nil
}

// Healthy reports whether the last PING of the list's Redis was answered
// (or, right after registration, the checks). A lookup that cannot reach
// the server marks it unhealthy at once. It is one atomic load.
func (l *List) Healthy() bool { return l.conn.healthy.Load() }

// HealthError is why the list is unhealthy, nil when it is healthy.
func (l *List) HealthError() error {
	if l.conn.healthy.Load() {
		return nil
	}
	return *l.conn.lastErr.Load()
}

// Close releases the list's share of the client; the last list of a URL
// closes the client and stops its health poll. Lookups after Close fail
// as unavailable. It is safe to call more than once.
func (l *List) Close() error {
	l.closeOnce.Do(l.release)
	return nil
}

// Predict returns the top req.K items of the request's list: the user's
// key, else the default key. It is one round trip (see the package doc).
func (l *List) Predict(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	if req.K < 1 {
		return nil, backend.RejectInput(nil, "k must be at least 1, got %d", req.K)
	}
	var keys [2]string
	n := 0
	if k, ok := l.user.build(req.UserID, req.Context); ok {
		keys[n], n = k, n+1
	}
	if k, ok := l.fallback.build(req.UserID, req.Context); ok && !l.fallback.empty() {
		keys[n], n = k, n+1
	}
	if n == 0 {
		return nil, fmt.Errorf("redis: %w: the request lacks a context value the key needs, and there is no default list", backend.ErrNotFound)
	}
	if req.Candidates != nil && len(req.Candidates) == 0 {
		return []backend.Item{}, nil // nothing may be returned: no need to ask
	}
	items, err := l.lookup(ctx, keys[:n], req)
	if err != nil && backend.Classify(err) == backend.ClassUnavailable {
		l.conn.setHealth(err)
	}
	return items, err
}

// lookup runs the script on keys (tried in order) for req and ranks what
// it read.
func (l *List) lookup(ctx context.Context, keys []string, req *backend.Request) ([]backend.Item, error) {
	var args []any
	switch {
	case l.format == FormatJSON:
		args = []any{modeJSON, MaxJSONBytes}
	case req.Candidates != nil:
		args = make([]any, 1, 1+len(req.Candidates))
		args[0] = modeCands
		for _, c := range req.Candidates {
			args = append(args, c)
		}
	default:
		args = []any{modeTop, req.K + len(req.Exclude)}
	}
	res, err := l.script.Run(ctx, l.conn.rdb, keys, args...).Slice()
	if err != nil {
		return nil, callError(ctx, err)
	}
	src, ok := at[int64](res, 0)
	if !ok || src < 0 || src > int64(len(keys)) {
		return nil, fmt.Errorf("redis: unexpected answer from the lookup script: %v", res)
	}
	if src == 0 {
		if len(keys) == 1 {
			return nil, fmt.Errorf("redis: %w: no list at %q", backend.ErrNotFound, keys[0])
		}
		return nil, fmt.Errorf("redis: %w: no list at %q nor at %q", backend.ErrNotFound, keys[0], keys[1])
	}
	key := keys[src-1]
	status, _ := at[string](res, 1)
	switch status {
	case stType:
		t, _ := at[string](res, 2)
		want := "zset"
		if l.format == FormatJSON {
			want = "string"
		}
		return nil, fmt.Errorf("%w: %q holds a %s, not the %s format %s wants", backend.ErrBadOutput, key, t, want, l.format)
	case stSize:
		size, _ := at[int64](res, 2)
		return nil, fmt.Errorf("%w: %q holds %d bytes, more than the %d a JSON list may take", backend.ErrBadOutput, key, size, MaxJSONBytes)
	case stOK:
	default:
		return nil, fmt.Errorf("redis: unexpected answer from the lookup script: %v", res)
	}
	var items []backend.Item
	switch args[0] {
	case modeJSON:
		raw, _ := at[string](res, 2)
		if items, err = decodeList([]byte(raw)); err != nil {
			return nil, fmt.Errorf("%q: %w", key, err)
		}
		if req.Candidates != nil {
			items = onlyCandidates(items, req.Candidates)
		}
	case modeCands:
		scores, _ := at[[]any](res, 2)
		if len(scores) != len(req.Candidates) {
			return nil, fmt.Errorf("redis: the lookup script answered %d scores for %d candidates", len(scores), len(req.Candidates))
		}
		items = make([]backend.Item, 0, len(scores))
		for i, v := range scores {
			if v == nil {
				continue // not in the list: not returned
			}
			s, err := parseScore(v)
			if err != nil {
				return nil, fmt.Errorf("%q, member %q: %w", key, req.Candidates[i], err)
			}
			items = append(items, backend.Item{ID: req.Candidates[i], Score: s})
		}
	default:
		top, _ := at[[]any](res, 2)
		ties, _ := at[[]any](res, 3)
		items = make([]backend.Item, 0, (len(top)+len(ties))/2)
		for _, pairs := range [2][]any{top, ties} {
			if items, err = appendPairs(items, pairs); err != nil {
				return nil, fmt.Errorf("%q: %w", key, err)
			}
		}
	}
	return backend.TopK(items, req.Exclude, req.K), nil
}

// at returns res[i] as a T.
func at[T any](res []any, i int) (T, bool) {
	var zero T
	if i >= len(res) {
		return zero, false
	}
	v, ok := res[i].(T)
	return v, ok
}

// appendPairs appends the items of a member, score, member, score, … reply.
func appendPairs(items []backend.Item, pairs []any) ([]backend.Item, error) {
	if len(pairs)%2 != 0 {
		return nil, fmt.Errorf("%w: %d values for member-score pairs", backend.ErrBadOutput, len(pairs))
	}
	for i := 0; i < len(pairs); i += 2 {
		id, ok := pairs[i].(string)
		if !ok {
			return nil, fmt.Errorf("%w: member %v is not a string", backend.ErrBadOutput, pairs[i])
		}
		s, err := parseScore(pairs[i+1])
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", id, err)
		}
		items = append(items, backend.Item{ID: id, Score: s})
	}
	return items, nil
}

// parseScore reads a score as Redis formats it; a non-finite score (a
// sorted set accepts ±inf) is bad output.
func parseScore(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("%w: score %v is not a string", backend.ErrBadOutput, v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%w: score %q is not a finite number", backend.ErrBadOutput, s)
	}
	return f, nil
}

// onlyCandidates keeps the items whose id is a candidate, in place.
func onlyCandidates(items []backend.Item, cands []string) []backend.Item {
	set := make(map[string]struct{}, len(cands))
	for _, c := range cands {
		set[c] = struct{}{}
	}
	out := items[:0]
	for _, it := range items {
		if _, ok := set[it.ID]; ok {
			out = append(out, it)
		}
	}
	return out
}

// callError turns a failed lookup into an error the router classifies:
// deadline and canceled from ctx (or a timed-out read), unavailable for
// a server that cannot be reached or cannot answer now (loading,
// busy with a script, refusing clients or our credentials), other for
// any other error reply.
func callError(ctx context.Context, err error) error {
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return fmt.Errorf("redis lookup: %w (%v)", context.DeadlineExceeded, err)
	case context.Canceled:
		return fmt.Errorf("redis lookup: %w", context.Canceled)
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return fmt.Errorf("redis lookup: %w (%v)", context.DeadlineExceeded, err)
	}
	if _, ok := errors.AsType[redis.Error](err); ok {
		switch {
		case redis.IsLoadingError(err), redis.IsTryAgainError(err), redis.IsMasterDownError(err),
			redis.IsMaxClientsError(err), redis.IsAuthError(err), redis.IsPermissionError(err),
			redis.HasErrorPrefix(err, "BUSY"):
			return fmt.Errorf("redis lookup: %w: %v", backend.ErrUnavailable, err)
		}
		return fmt.Errorf("redis lookup: %w", err)
	}
	// Connection refused or reset, a closed client, an exhausted pool.
	return fmt.Errorf("redis lookup: %w: %v", backend.ErrUnavailable, err)
}

// validate checks, at registration, that the server answers and, for a
// default_key without context placeholders, that it holds a list in the
// version's format; a zset list also needs ZMSCORE (Redis 6.2 or later).
func (l *List) validate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	if err := l.conn.rdb.Ping(ctx).Err(); err != nil {
		return fault.Field("backend.url", "invalid_model", "Redis at %s does not answer PING: %v", l.conn.addr, err)
	}
	if l.format == FormatZSet {
		info, err := l.conn.rdb.Do(ctx, "COMMAND", "INFO", "ZMSCORE").Slice()
		if err != nil {
			return fault.Field("backend.url", "invalid_model", "Redis at %s: COMMAND INFO: %v", l.conn.addr, err)
		}
		if len(info) != 1 || info[0] == nil {
			return fault.Field("backend.url", "invalid_model", "Redis at %s has no ZMSCORE: a zset list needs Redis 6.2 or later", l.conn.addr)
		}
	}
	if l.fallback.empty() || !l.fallback.fixed() {
		return nil // a key built from request values cannot be checked now
	}
	key, _ := l.fallback.build("", nil)
	_, err := l.lookup(ctx, []string{key}, &backend.Request{K: 1})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, backend.ErrNotFound):
		return fault.Field("backend.default_key", "invalid_model", "%q does not exist in Redis at %s", key, l.conn.addr)
	case errors.Is(err, backend.ErrBadOutput):
		return fault.Field("backend.default_key", "invalid_model", "%v", err)
	}
	return fault.Field("backend.url", "invalid_model", "Redis at %s: %v", l.conn.addr, err)
}
