package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Defaults of Keys.
const (
	RefreshInterval = 500 * time.Millisecond
	TouchInterval   = 2 * time.Second
)

// FlushTimeout bounds one write of the noted last-use times (Flush), so
// that a slow store does not hold Run's loop.
const FlushTimeout = 5 * time.Second

// KeysOptions are the optional settings of Keys. The zero value bounds
// Run's last flush by FlushTimeout alone.
type KeysOptions struct {
	// FinalContext, when set, gives the context of the flush Run makes
	// once its own context has ended, so that a server bounds it by its
	// shutdown deadline (and never beyond FlushTimeout); it is called
	// once, then. Nil: FlushTimeout from the end of Run's context.
	FinalContext func() context.Context
}

// Keys is the cache of the stored keys that requests are checked against.
// Safe for concurrent use.
type Keys struct {
	st    Store
	log   *slog.Logger
	now   func() time.Time
	final func() context.Context

	mu     sync.RWMutex
	byHash map[Hash]*Key

	touchMu sync.Mutex
	touched map[string]time.Time
}

// NewKeys loads the keys of st. log may be nil.
func NewKeys(ctx context.Context, st Store, log *slog.Logger, opts KeysOptions) (*Keys, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	k := &Keys{st: st, log: log, now: time.Now, final: opts.FinalContext, touched: map[string]time.Time{}}
	if err := k.Refresh(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Refresh reloads every key from the store.
func (k *Keys) Refresh(ctx context.Context) error {
	all, err := k.st.ListKeys(ctx)
	if err != nil {
		return err
	}
	m := make(map[Hash]*Key, len(all))
	for i := range all {
		m[all[i].Hash] = &all[i]
	}
	k.mu.Lock()
	k.byHash = m
	k.mu.Unlock()
	return nil
}

// Lookup returns the stored key matching a presented one, or nil. The
// last use is noted and written later.
func (k *Keys) Lookup(presented string) *Key {
	if !WellFormed(presented) {
		return nil
	}
	h := Sum(presented)
	k.mu.RLock()
	found := k.byHash[h]
	k.mu.RUnlock()
	if found == nil || subtle.ConstantTimeCompare(found.Hash[:], h[:]) != 1 {
		return nil
	}
	k.touchMu.Lock()
	k.touched[found.Name] = k.now()
	k.touchMu.Unlock()
	return found
}

// Len is the number of keys in the cache.
func (k *Keys) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.byHash)
}

// Run refreshes the cache every RefreshInterval and whenever changes
// delivers (nil: never), and writes last-use times every TouchInterval,
// until ctx ends; then it writes them once more (see
// KeysOptions.FinalContext).
func (k *Keys) Run(ctx context.Context, changes <-chan struct{}) {
	refresh := time.NewTicker(RefreshInterval)
	defer refresh.Stop()
	touch := time.NewTicker(TouchInterval)
	defer touch.Stop()
	reload := func() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := k.Refresh(rctx); err != nil && ctx.Err() == nil {
			k.log.Debug("refreshing API keys", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			k.finalFlush(ctx)
			return
		case <-refresh.C:
			reload()
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			reload()
		case <-touch.C:
			k.Flush(ctx)
		}
	}
}

// finalFlush is Run's last flush, after ctx ended: on
// KeysOptions.FinalContext, else on ctx's values, each within FlushTimeout.
func (k *Keys) finalFlush(ctx context.Context) {
	fctx := context.WithoutCancel(ctx)
	if k.final != nil {
		fctx = k.final()
	}
	k.Flush(fctx)
}

// Flush writes the noted last-use times, within FlushTimeout and ctx.
// Times it could not write are dropped.
func (k *Keys) Flush(ctx context.Context) {
	k.touchMu.Lock()
	used := k.touched
	k.touched = map[string]time.Time{}
	k.touchMu.Unlock()
	if len(used) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, FlushTimeout)
	defer cancel()
	if err := k.st.TouchKeys(fctx, used); err != nil {
		k.log.Warn("recording API key last use", "err", err)
	}
}

// Create makes a key from the name, scopes and limits of spec, stores it
// and returns it with its plaintext, which is not kept anywhere.
func (k *Keys) Create(ctx context.Context, spec Key) (string, Key, error) {
	plain, nk, err := Create(ctx, k.st, spec, k.now())
	if err != nil {
		return "", Key{}, err
	}
	k.mu.Lock()
	m := make(map[Hash]*Key, len(k.byHash)+1)
	for h, v := range k.byHash {
		m[h] = v
	}
	c := nk
	m[nk.Hash] = &c
	k.byHash = m
	k.mu.Unlock()
	return plain, nk, nil
}

// Create makes and stores a key (see Keys.Create), for tools that work on
// the store directly.
func Create(ctx context.Context, st Store, spec Key, now time.Time) (string, Key, error) {
	nk := Key{Name: spec.Name, Scopes: append([]string(nil), spec.Scopes...), Rate: spec.Rate, Burst: spec.Burst,
		CreatedAt: now.UTC().Truncate(time.Second)}
	if err := Validate(&nk); err != nil {
		return "", Key{}, &InvalidError{err}
	}
	plain, h := Generate()
	nk.Hash = h
	if err := st.PutKey(ctx, nk); err != nil {
		return "", Key{}, err
	}
	return plain, nk, nil
}

// InvalidError is a key spec that Validate refused.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// IsInvalid reports whether err is an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// List returns the stored keys by name, with last-use times not yet
// written merged in.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	all, err := k.st.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	k.touchMu.Lock()
	for i := range all {
		if t, ok := k.touched[all[i].Name]; ok && t.After(all[i].LastUsed) {
			all[i].LastUsed = t
		}
	}
	k.touchMu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	return all, nil
}

// Revoke deletes the named key and drops it from this cache at once; the
// other replicas drop it within a second.
func (k *Keys) Revoke(ctx context.Context, name string) (bool, error) {
	ok, err := k.st.DeleteKey(ctx, name)
	if err != nil {
		return false, err
	}
	k.mu.Lock()
	m := make(map[Hash]*Key, len(k.byHash))
	for h, v := range k.byHash {
		if v.Name != name {
			m[h] = v
		}
	}
	k.byHash = m
	k.mu.Unlock()
	return ok, nil
}
