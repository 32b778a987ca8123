// Package auth is the gateway's API keys: their generation, the scope rules,
// an in-memory cache of the stored keys and per-key rate limits.
//
// A key is "mg_" followed by 32 random bytes written in base62 (43
// characters). Only its SHA-256 hash is stored, with a name, scopes, an
// optional rate limit and creation / last-use times. A presented key is
// hashed, looked up by hash in the cache and compared in constant time.
//
// # Revocation
//
// Keys (the cache) reloads every stored key every 500 ms, and at once when
// the store signals a change (Redis pub/sub), so a key revoked on one replica
// is refused by every replica within a second. Last-use times are collected
// in memory and written in batches, never once per request.
//
// # Rate limits
//
// A key with a rate has a token bucket of Rate tokens a second holding at
// most Burst, full at first; a key without a rate is not limited.
// LocalLimiter keeps the buckets in the process (exact, per process).
// SharedLimiter keeps them in a shared store (Redis, one atomic GCRA
// script, so the limit holds across all replicas together) and takes
// tokens from it in small leases: a replica that took a lease of n tokens
// admits the next n requests of that key without a round trip. The
// trade-off: every admitted request has consumed a token of the shared
// bucket, so the replicas together never exceed the limit; but tokens
// leased and not used before the lease expires (LeaseTTL) are lost, so a
// key used lightly on many replicas may be admitted slightly less than its
// rate (at most one lease, ≤ 5% of the rate and ≤ a quarter of the burst,
// per replica per LeaseTTL). While the shared store does not answer, each
// replica falls back to its own local bucket.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Scopes.
const (
	ScopeClient  = "client"  // recommend, feedback
	ScopeML      = "ml"      // registry changes and every read
	ScopeAnalyst = "analyst" // reports, history, /ui/ (read only)
	ScopeAdmin   = "admin"   // keys, and everything else
)

// AllScopes lists the valid scopes.
var AllScopes = []string{ScopeClient, ScopeML, ScopeAnalyst, ScopeAdmin}

// Prefix starts every key.
const Prefix = "mg_"

// encodedLen is the length of the base62 part of a key: 62^43 > 2^256.
const encodedLen = 43

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Hash is the SHA-256 of a key; it is written in hex in JSON.
type Hash [32]byte

// MarshalText writes the hash in hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h[:])), nil }

// UnmarshalText reads a hash in hex.
func (h *Hash) UnmarshalText(b []byte) error {
	raw, err := hex.DecodeString(string(b))
	if err != nil || len(raw) != len(h) {
		return fmt.Errorf("auth: a key hash is 64 hex digits")
	}
	copy(h[:], raw)
	return nil
}

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Key is a stored API key: never the key itself, only its hash.
type Key struct {
	Name      string    `json:"name"`
	Hash      Hash      `json:"hash"`
	Scopes    []string  `json:"scopes"`
	Rate      float64   `json:"rate,omitempty"`  // requests per second; 0 = not limited
	Burst     int       `json:"burst,omitempty"` // bucket size
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// Store keeps keys by name. *store.DB and *redisstore.Store implement it.
type Store interface {
	ListKeys(ctx context.Context) ([]Key, error)
	// PutKey stores k; it fails with ErrExists when the name is taken.
	PutKey(ctx context.Context, k Key) error
	// DeleteKey removes the named key, reporting whether it existed.
	DeleteKey(ctx context.Context, name string) (bool, error)
	// TouchKeys records last-use times by key name; unknown names are
	// ignored and a time never moves back.
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// ErrExists is returned by Store.PutKey when a key of that name exists.
var ErrExists = fmt.Errorf("a key of that name exists")

// Generate returns a new random key and its hash.
func Generate() (plaintext string, hash Hash) {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	n := new(big.Int).SetBytes(raw[:])
	out := make([]byte, encodedLen)
	base, mod := big.NewInt(62), new(big.Int)
	for i := encodedLen - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	plaintext = Prefix + string(out)
	return plaintext, Sum(plaintext)
}

// Sum is the hash of a presented key.
func Sum(plaintext string) Hash { return sha256.Sum256([]byte(plaintext)) }

// WellFormed reports whether s looks like a key (prefix, length, alphabet).
func WellFormed(s string) bool {
	if len(s) != len(Prefix)+encodedLen || !strings.HasPrefix(s, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(s); i++ {
		if strings.IndexByte(base62, s[i]) < 0 {
			return false
		}
	}
	return true
}

// Allowed reports whether a key with scopes may make a call that needs the
// scope need. admin may do everything; ml may also do what analyst may
// (every analyst call is a read, and ml reads everything); otherwise a key
// needs the scope itself.
func Allowed(scopes []string, need string) bool {
	for _, s := range scopes {
		switch {
		case s == ScopeAdmin, s == need, s == ScopeML && need == ScopeAnalyst:
			return true
		}
	}
	return false
}

// Grantors lists the scopes that grant need, for error messages: the scope
// itself first.
func Grantors(need string) []string {
	var out []string
	for _, s := range append([]string{need}, AllScopes...) {
		if !slices.Contains(out, s) && Allowed([]string{s}, need) {
			out = append(out, s)
		}
	}
	return out
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks a new key's name, scopes and limits, filling a default
// burst (the rate, rounded up) when only a rate is given.
func Validate(k *Key) error {
	if !nameRE.MatchString(k.Name) {
		return fmt.Errorf("name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if len(k.Scopes) == 0 {
		return fmt.Errorf("scopes: at least one of %s", strings.Join(AllScopes, ", "))
	}
	for _, s := range k.Scopes {
		if !slices.Contains(AllScopes, s) {
			return fmt.Errorf("scopes: unknown scope %q (one of %s)", s, strings.Join(AllScopes, ", "))
		}
	}
	slices.Sort(k.Scopes)
	k.Scopes = slices.Compact(k.Scopes)
	if k.Rate < 0 || k.Rate > 1e9 {
		return fmt.Errorf("rate: requests per second, ≥ 0 (0 = not limited)")
	}
	if k.Burst < 0 || k.Burst > 1e9 {
		return fmt.Errorf("burst: ≥ 0")
	}
	if k.Rate == 0 && k.Burst != 0 {
		return fmt.Errorf("burst: needs a rate")
	}
	if k.Rate > 0 && k.Burst == 0 {
		k.Burst = max(1, int(k.Rate+0.999999))
	}
	return nil
}

type ctxKey struct{}

// WithKey returns ctx carrying the authenticated key (for audit logs: use
// its Name, never anything else).
func WithKey(ctx context.Context, k *Key) context.Context { return context.WithValue(ctx, ctxKey{}, k) }

// FromContext returns the authenticated key of a request, or nil.
func FromContext(ctx context.Context) *Key {
	k, _ := ctx.Value(ctxKey{}).(*Key)
	return k
}
