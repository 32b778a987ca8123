package auth

import (
	"context"
	"math"
	"sync"
	"time"
)

// Limiter decides whether a key may make n more requests now (a batch
// call of n entries is n requests); when not, it says how long to wait and
// takes nothing. An n above the key's burst takes the whole burst: a batch
// larger than the burst passes when the bucket is full.
type Limiter interface {
	AllowN(ctx context.Context, k *Key, n int) (ok bool, retryAfter time.Duration)
}

// bucket is one key's token bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

// LocalLimiter keeps every key's bucket in this process. Safe for
// concurrent use.
type LocalLimiter struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets map[Hash]*bucket
}

// NewLocalLimiter returns an in-process limiter.
func NewLocalLimiter() *LocalLimiter {
	return &LocalLimiter{now: time.Now, buckets: map[Hash]*bucket{}}
}

// AllowN takes n tokens from k's bucket, or none.
func (l *LocalLimiter) AllowN(_ context.Context, k *Key, n int) (bool, time.Duration) {
	if k.Rate <= 0 {
		return true, 0
	}
	now := l.now()
	burst := float64(max(k.Burst, 1))
	want := math.Min(float64(max(n, 1)), burst)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k.Hash]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		l.buckets[k.Hash] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*k.Rate)
	b.last = now
	if b.tokens >= want {
		b.tokens -= want
		return true, 0
	}
	return false, time.Duration((want - b.tokens) / k.Rate * float64(time.Second))
}

// Taker takes up to n tokens of a key's shared bucket (see the package
// doc): granted tokens, or, when none, how long until one is there.
// *redisstore.Store implements it.
type Taker interface {
	TakeTokens(ctx context.Context, bucket string, rate float64, burst, n int) (granted int, retryAfter time.Duration, err error)
}

// LeaseTTL is how long leased tokens stay usable by the replica that took
// them.
const LeaseTTL = 250 * time.Millisecond

// lease is a replica's share of a key's shared bucket.
type lease struct {
	mu          sync.Mutex
	tokens      int
	expires     time.Time
	deniedUntil time.Time
}

// SharedLimiter limits each key across replicas through a Taker, taking
// tokens in small leases; when the Taker fails it falls back to Local.
type SharedLimiter struct {
	t      Taker
	local  *LocalLimiter
	now    func() time.Time
	mu     sync.Mutex
	leases map[Hash]*lease
	// OnError, when set, is told of each failed Taker call.
	OnError func(error)
}

// NewSharedLimiter returns a limiter over t.
func NewSharedLimiter(t Taker) *SharedLimiter {
	return &SharedLimiter{t: t, local: NewLocalLimiter(), now: time.Now, leases: map[Hash]*lease{}}
}

// leaseSize is how many tokens one round trip takes: 5% of the rate, at
// most a quarter of the burst, at least 1.
func leaseSize(k *Key) int {
	return max(1, int(math.Min(k.Rate*0.05, float64(k.Burst)/4)))
}

// AllowN takes n tokens from this replica's lease of k's bucket, taking
// what is missing (at least a lease) from the shared bucket in one round
// trip; when the lease and what the shared bucket grants fall short, it
// takes nothing and keeps the granted tokens in the lease.
func (l *SharedLimiter) AllowN(ctx context.Context, k *Key, n int) (bool, time.Duration) {
	if k.Rate <= 0 {
		return true, 0
	}
	n = min(max(n, 1), max(k.Burst, 1))
	l.mu.Lock()
	ls := l.leases[k.Hash]
	if ls == nil {
		ls = &lease{}
		l.leases[k.Hash] = ls
	}
	l.mu.Unlock()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := l.now()
	have := 0
	if now.Before(ls.expires) {
		have = ls.tokens
	}
	if have >= n {
		ls.tokens -= n
		return true, 0
	}
	if now.Before(ls.deniedUntil) {
		return false, ls.deniedUntil.Sub(now)
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 100*time.Millisecond)
	defer cancel()
	got, retry, err := l.t.TakeTokens(tctx, "rl:"+k.Hash.String(), k.Rate, max(k.Burst, 1), max(leaseSize(k), n-have))
	if err != nil {
		if l.OnError != nil {
			l.OnError(err)
		}
		return l.local.AllowN(ctx, k, n)
	}
	if got == 0 {
		ls.deniedUntil = now.Add(retry)
		return false, retry
	}
	ls.tokens, ls.expires = have+got, now.Add(LeaseTTL)
	if ls.tokens < n {
		// Not enough yet: keep what was granted for the next call.
		return false, time.Duration(float64(n-ls.tokens) / k.Rate * float64(time.Second))
	}
	ls.tokens -= n
	return true, 0
}
