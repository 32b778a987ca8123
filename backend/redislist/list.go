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
func (l *List) Healthy() bool { return l.conn.health.Healthy() }

// HealthError is why the list is unhealthy, nil when it is healthy.
func (l *List) HealthError() error { return l.conn.health.Err() }

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
	lk, err := l.prepare(req)
	if err != nil || lk.done {
		return lk.items, err
	}
	res, err := l.script.Run(ctx, l.conn.rdb, lk.keys, lk.args...).Slice()
	if err != nil {
		return nil, l.failed(ctx, err)
	}
	return lk.answer(res, req)
}

// PredictBatch looks up the lists of several requests in one round trip:
// a pipeline of the script's runs, one per request. A request whose list
// is missing (not_found) makes the whole call ErrNotStackable, so that
// the caller answers, and counts, each request alone; any other error is
// the whole call's.
func (l *List) PredictBatch(ctx context.Context, reqs []*backend.Request) ([][]backend.Item, error) {
	lks := make([]lookup, len(reqs))
	for i, req := range reqs {
		lk, err := l.prepare(req)
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("redis: %w: request %d: %w", backend.ErrNotStackable, i, err)
		}
		if err != nil {
			return nil, err
		}
		lks[i] = lk
	}
	cmds, err := l.pipeline(ctx, lks)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server lost its scripts (a restart, SCRIPT FLUSH): load it
		// and go again, as Script.Run does for one call.
		if err = l.script.Load(ctx, l.conn.rdb).Err(); err == nil {
			cmds, err = l.pipeline(ctx, lks)
		}
	}
	if err != nil {
		return nil, l.failed(ctx, err)
	}
	out := make([][]backend.Item, len(reqs))
	for i, req := range reqs {
		if lks[i].done {
			out[i] = lks[i].items
			continue
		}
		res, err := cmds[i].Slice()
		if err == nil {
			out[i], err = lks[i].answer(res, req)
		}
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("redis: %w: request %d: %w", backend.ErrNotStackable, i, err)
		}
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
	}
	return out, nil
}

// pipeline sends the script's runs of lks that need one (EVALSHA) in one
// round trip; cmds[i] is lks[i]'s, nil when it needs none.
func (l *List) pipeline(ctx context.Context, lks []lookup) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(lks))
	_, err := l.conn.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range lks {
			if !lks[i].done {
				cmds[i] = l.script.EvalSha(ctx, p, lks[i].keys, lks[i].args...)
			}
		}
		return nil
	})
	return cmds, err
}

// failed turns a failed call into its error, and marks the list unhealthy
// when Redis could not be reached.
func (l *List) failed(ctx context.Context, err error) error {
	err = callError(ctx, err)
	if backend.Classify(err) == backend.ClassUnavailable {
		l.conn.setHealth(err)
	}
	return err
}

// lookup is one request's call: the keys to try, in order, and the
// script's arguments; done when the answer (items) is known without one.
type lookup struct {
	keys  []string
	args  []any
	json  bool
	done  bool
	items []backend.Item
}

// prepare builds a request's lookup: its keys (the user's when every
// value it needs is there, then the default) and the script's mode.
func (l *List) prepare(req *backend.Request) (lookup, error) {
	var lk lookup
	if req.K < 1 {
		return lk, backend.RejectInput(nil, "k must be at least 1, got %d", req.K)
	}
	lk.keys = make([]string, 0, 2)
	if k, ok := l.user.build(req.UserID, req.Context); ok {
		lk.keys = append(lk.keys, k)
	}
	if k, ok := l.fallback.build(req.UserID, req.Context); ok && !l.fallback.empty() {
		lk.keys = append(lk.keys, k)
	}
	if len(lk.keys) == 0 {
		return lk, fmt.Errorf("redis: %w: the request lacks a context value the key needs, and there is no default list", backend.ErrNotFound)
	}
	if req.Candidates != nil && len(req.Candidates) == 0 {
		// Nothing may be returned: no need to ask.
		lk.done, lk.items = true, []backend.Item{}
		return lk, nil
	}
	switch {
	case l.format == FormatJSON:
		lk.json = true
		lk.args = []any{modeJSON, MaxJSONBytes}
	case req.Candidates != nil:
		lk.args = make([]any, 1, 1+len(req.Candidates))
		lk.args[0] = modeCands
		for _, c := range req.Candidates {
			lk.args = append(lk.args, c)
		}
	default:
		lk.args = []any{modeTop, req.K + len(req.Exclude)}
	}
	return lk, nil
}

// answer reads the script's answer res to lk and ranks what it read.
func (lk *lookup) answer(res []any, req *backend.Request) ([]backend.Item, error) {
	keys := lk.keys
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
		want, format := "zset", FormatZSet
		if lk.json {
			want, format = "string", FormatJSON
		}
		return nil, fmt.Errorf("%w: %q holds a %s, not the %s format %s wants", backend.ErrBadOutput, key, t, want, format)
	case stSize:
		size, _ := at[int64](res, 2)
		return nil, fmt.Errorf("%w: %q holds %d bytes, more than the %d a JSON list may take", backend.ErrBadOutput, key, size, MaxJSONBytes)
	case stOK:
	default:
		return nil, fmt.Errorf("redis: unexpected answer from the lookup script: %v", res)
	}
	var items []backend.Item
	var err error
	switch lk.args[0] {
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
	probe := &backend.Request{K: 1}
	lk, err := l.prepare(probe)
	if err == nil {
		lk.keys = []string{key} // the default alone
		var res []any
		if res, err = l.script.Run(ctx, l.conn.rdb, lk.keys, lk.args...).Slice(); err == nil {
			_, err = lk.answer(res, probe)
		}
	}
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
