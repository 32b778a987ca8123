// Package redisstore is the shared state of many gateway replicas in Redis:
// the registry's records, metadata, the token signing key, the bandit
// counters, the feedback dedupe keys, the discounted-count snapshots, the
// report history and the off-policy sums. It implements the same small
// interfaces, declared by their users, as the embedded *store.DB (both
// pass store/storetest), and OffPolicyOthers on top (see below).
//
// Counters only ever grow by atomic server-side increments (HINCRBY inside
// one Lua script per write), never by a read-modify-write in the client.
// Each write batch carries a random id recorded by the script, so applying
// a batch twice changes nothing the second time.
//
// When Redis is unreachable or slower than Options.OpTimeout, AddTrials and
// ApplyFeedback do not fail: the batch goes to a local, fsynced write-ahead
// log in Options.WALDir, and a background replayer applies it, through the
// same idempotent script, once Redis answers again. Feedback results given
// during an outage are provisional: an event counts as a duplicate only if
// this replica saw it before during the outage (duplicates across replicas
// are still counted once, when the log is replayed), and nothing is
// reported as counted (no Trial or Success) until Redis has it.
//
// # Servers and settings
//
// The URL names one server or, with redis+sentinel://, the master that
// Sentinel names (package redisurl). A failover looks like a short outage:
// writes go to the log until the promoted replica answers. Behind Sentinel
// a write is confirmed only once the master's online replicas have it
// (replicas.go), so the replica promoted holds every write that was not
// logged. Once a server answers, the store checks with CONFIG GET that it
// keeps an append-only file and does not evict keys (requiredSettings),
// and logs a warning naming the setting when it does not.
//
// # Keys
//
// Every key starts with Options.Prefix (P, default "modelgate:"). Redis
// 6.2 or later is needed (ZRANGE ... BYSCORE).
//
//	P reg:models, P reg:endpoints  hash  registry records, field = record key;
//	                               changed by compare-and-set (Update, one Lua script)
//	P registry                     pub/sub channel, "put|delete BUCKET/KEY" per change
//	P meta                         hash  metadata (Meta, SetMeta)
//	P signing_key                  string, 32 random bytes, created once (SET NX)
//	P counters:trials              hash  field counters.Key.Encode ("endpoint\x00arm\x00segment") -> trials
//	P counters:successes           hash  same fields -> successes
//	P d:<dedupe key>               string "1", TTL = the op's Expires - its Now
//	                               + store.ExpiryGrace (min 1 s): event, trial
//	                               and success keys of FeedbackOp; for its
//	                               ItemsKey a set of the distinct items, same TTL
//	P batch:<32 hex>               string, the batch's recorded results, TTL BatchTTL
//	P disc                         hash  field "endpoint\x00arm\x00segment" -> 40-byte
//	                               discounted-count snapshot (counters.Disc.MarshalBinary)
//	P hist:<endpoint>\x00<segment>
//	                               hash  history points, field = decimal Unix seconds,
//	                               value = the point; HSETNX, so the first writer wins
//	P hist:index                   set   the history series keys, for pruning
//	P op:<endpoint>\x00<segment>\x00<minute>
//	                               hash  off-policy snapshots of one minute (decimal
//	                               Unix seconds), field = replica id -> JSON of that
//	                               replica's cumulative offpolicy.Minute
//	P op:touched                   zset  op keys, score = when last written (Unix ms,
//	                               the writer's clock), for OffPolicyOthers
//	P op:minutes                   zset  op keys, score = their minute, for
//	                               LoadOffPolicy and pruning
//
// # Off-policy sums across replicas
//
// Each replica keeps its own running off-policy sums and stores snapshots
// of them under its Options.ReplicaID, so replicas never overwrite each
// other's counts. At start a replica loads its own snapshots back
// (LoadOffPolicy) and resumes its sums from them; what the other replicas
// counted it reads, summed, with OffPolicyOthers. A minute's total is its
// own sums plus the others'.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redisurl"
	"github.com/modelgate/modelgate/store"
)

// Defaults of Options.
const (
	DefaultPrefix        = "modelgate:"
	DefaultDialTimeout   = 250 * time.Millisecond
	DefaultReadTimeout   = 50 * time.Millisecond
	DefaultWriteTimeout  = 50 * time.Millisecond
	DefaultAdminTimeout  = 2 * time.Second
	DefaultOpTimeout     = 100 * time.Millisecond
	DefaultReplayTimeout = 2 * time.Second
	DefaultCheckInterval = 250 * time.Millisecond
	DefaultBatchTTL      = 7 * 24 * time.Hour
	DefaultWALMaxBytes   = 256 << 20
)

// Options configure a Store. The zero value of every field but WALDir
// means its default.
type Options struct {
	// Prefix starts every key and the registry channel. Default
	// "modelgate:". Replicas that share state must use the same prefix.
	Prefix string
	// PoolSize is the maximum number of connections of the hot-path pool
	// (AddTrials, ApplyFeedback); zero means go-redis's default (10 per
	// GOMAXPROCS). Everything else uses a second pool of that default size.
	PoolSize int
	// DialTimeout bounds one connection attempt. Default 250 ms.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound the socket reads and writes of the
	// hot paths (AddTrials, ApplyFeedback, health checks). Default 50 ms
	// each: a slow Redis must not hold a request.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// AdminTimeout bounds the reads and writes of everything else:
	// registry records, metadata, the signing key, LoadCounters, replays
	// of the log and the registry subscription, which run on a separate
	// connection pool. Default 2 s.
	AdminTimeout time.Duration
	// OpTimeout bounds one attempt of AddTrials or ApplyFeedback in Redis
	// before the batch goes to the write-ahead log instead. Default 100 ms.
	OpTimeout time.Duration
	// ReplayTimeout bounds one replay of a logged batch. Default 2 s;
	// AdminTimeout bounds it as well.
	ReplayTimeout time.Duration
	// CheckInterval is how often the background loop pings Redis and, when
	// it answers, replays the log. Default 250 ms.
	CheckInterval time.Duration
	// BatchTTL is how long Redis remembers a batch id that may be replayed
	// (one that went to the log), and so how long after its first attempt
	// a replay is still recognised. Default 7 days. Ids of batches whose
	// first attempt was confirmed are released in the background.
	BatchTTL time.Duration
	// WALDir is the directory of the write-ahead log, e.g. a subdirectory
	// of the data dir. Required: acknowledged feedback lives here while
	// Redis is away. One process at a time may use it.
	WALDir string
	// WALMaxBytes bounds the log; a write that would grow it further fails
	// with ErrWALFull. Default 256 MiB.
	WALMaxBytes int64
	// OnWALSync, when set, is called after every fsync of the write-ahead
	// log with the number of records it made durable, before the writes
	// those records hold (AddTrials or ApplyFeedback calls during an
	// outage) return. Calls are serialized and hold up those writes:
	// it must be quick. Tests use it to check that acknowledgements follow
	// the fsync, which a kill -9 cannot show (the page cache survives the
	// process).
	OnWALSync func(records int)
	// Logger receives outage and replay messages; nil discards them.
	Logger *slog.Logger
	// ReplicaID names this replica's off-policy snapshots (see
	// PutOffPolicy). It must differ between replicas running at the same
	// time, or they overwrite each other's sums. Default: 8 random bytes in
	// hex, chosen at Open. A stable id per replica (e.g. the hostname of a
	// StatefulSet pod) is better: a restarted replica then loads its own
	// snapshots back at start (LoadOffPolicy), resumes its sums from them
	// and overwrites them, instead of starting from zero under a new id and
	// leaving the old snapshots behind as one more replica's (which is not
	// wrong, only one more field per minute until retention prunes it).
	ReplicaID string
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.AdminTimeout, DefaultAdminTimeout)
	def(&o.OpTimeout, DefaultOpTimeout)
	def(&o.ReplayTimeout, DefaultReplayTimeout)
	def(&o.CheckInterval, DefaultCheckInterval)
	def(&o.BatchTTL, DefaultBatchTTL)
	if o.BatchTTL < time.Second {
		o.BatchTTL = time.Second
	}
	if o.WALMaxBytes <= 0 {
		o.WALMaxBytes = DefaultWALMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.ReplicaID == "" {
		var id [8]byte
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
		o.ReplicaID = hex.EncodeToString(id[:])
	}
}

// Store is the Redis-backed store. Create it with Open; its methods are
// safe for concurrent use. Close stops its background loop; after Close,
// writes fail and Subscribe must not be called.
type Store struct {
	rdb   redis.UniversalClient // hot paths: write attempts and health checks, short timeouts
	admin redis.UniversalClient // registry, metadata, counters load, replays, subscription
	addr  string                // where the URL points, without its password, for messages

	warned map[string]string // setting -> the wrong value warned of; background loop only
	opt    Options
	log    *slog.Logger
	wal    *wal
	now    func() time.Time

	kTrials, kSuccesses, kReward, kDedupe, kChannel, kMeta, kSigning string
	kDisc, kHist, kHistIndex, kOp, kOpTouched, kOpMinutes            string

	healthy atomic.Bool
	// sentinel is set for a redis+sentinel:// URL; replicas is then the
	// master's online replicas at the last check, which every write waits
	// for (replicas.go). It stays 0 for a single server.
	sentinel bool
	replicas atomic.Int32
	again    atomic.Int64 // batches Redis had applied already when replayed
	wake     chan struct{}
	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// outage remembers the event keys answered provisionally as new and
	// not yet confirmed in Redis, with how many logged batches hold each,
	// so a repeat sent to this replica meanwhile is answered as a duplicate.
	outageMu sync.Mutex
	outage   map[string]int
	outageN  atomic.Int64

	// release lists ids of batches confirmed on their first attempt: no
	// replay can reach them, so their records are deleted early.
	releaseMu sync.Mutex
	release   []string
}

// maxRelease bounds the ids waiting for release; past it, records simply
// expire after BatchTTL.
const maxRelease = 100_000

// Open connects to Redis at url and opens the write-ahead log in
// opt.WALDir, whose batches are replayed in the background. The URL is
// redis://[user:pass@]HOST:PORT/DB, rediss://… (TLS) or
// redis+sentinel://[user:pass@]H1:26379,H2:26379/MASTER_NAME[/DB] (the
// master Sentinel names; the store follows failovers), as package redisurl
// reads them; redis+cluster:// is refused. Redis need not be up: writes go
// to the log until it is. Once it answers, its persistence and eviction
// settings are checked and a warning logged when they put acknowledged
// feedback at risk (see checkSettings).
func Open(ctx context.Context, url string, opt Options) (*Store, error) {
	opt.defaults()
	if opt.WALDir == "" {
		return nil, errors.New("redisstore: Options.WALDir is required (acknowledged feedback is kept there while Redis is unreachable)")
	}
	u, err := redisurl.Parse(url)
	if err != nil {
		return nil, err
	}

	s := &Store{
		opt: opt, log: opt.Logger, now: time.Now, addr: u.Addr(), sentinel: u.Sentinel(),
		kTrials: opt.Prefix + "counters:trials", kSuccesses: opt.Prefix + "counters:successes",
		kReward: opt.Prefix + "counters:reward",
		kDedupe: opt.Prefix + "d:", kChannel: opt.Prefix + "registry",
		kMeta: opt.Prefix + "meta", kSigning: opt.Prefix + "signing_key",
		kDisc: opt.Prefix + "disc", kHist: opt.Prefix + "hist:", kHistIndex: opt.Prefix + "hist:index",
		kOp: opt.Prefix + "op:", kOpTouched: opt.Prefix + "op:touched", kOpMinutes: opt.Prefix + "op:minutes",
		wake:   make(chan struct{}, 1),
		outage: map[string]int{},
		warned: map[string]string{},
	}
	s.wal, err = openWAL(opt.WALDir, opt.WALMaxBytes, opt.OnWALSync, func(p []byte) error {
		b, err := decodeBatch(p)
		if err != nil {
			return err
		}
		s.markOutage(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	s.rdb = u.NewClient(redisurl.Tuning{PoolSize: opt.PoolSize, DialTimeout: opt.DialTimeout, ReadTimeout: opt.ReadTimeout, WriteTimeout: opt.WriteTimeout})
	s.admin = u.NewClient(redisurl.Tuning{DialTimeout: max(opt.DialTimeout, min(opt.AdminTimeout, time.Second)), ReadTimeout: opt.AdminTimeout, WriteTimeout: opt.AdminTimeout})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	pctx, cancel := context.WithTimeout(ctx, opt.DialTimeout+opt.ReadTimeout)
	err = s.rdb.Ping(pctx).Err()
	cancel()
	// With batches to replay, the background loop's first replay decides.
	n, _ := s.wal.backlog()
	s.healthy.Store(err == nil && n == 0)
	if err != nil {
		s.log.Warn("redis unreachable at start; writes go to the write-ahead log until it answers", "addr", s.addr, "err", err)
	} else if s.sentinel {
		s.refreshReplicas(ctx)
	}
	if n, b := s.wal.backlog(); n > 0 {
		s.log.Info("write-ahead log holds batches to replay", "batches", n, "bytes", b)
	}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// Close stops the background loop and closes the connections and the log.
// Batches still in the log are replayed by the next Open of the same WALDir.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	err := s.wal.close()
	if cerr := s.rdb.Close(); err == nil {
		err = cerr
	}
	if cerr := s.admin.Close(); err == nil {
		err = cerr
	}
	return err
}

// Healthy reports whether writes go to Redis: it answered the last check
// (a PING and, while the write-ahead log holds batches, applying the
// oldest of them) and no write has failed since. While it is false,
// AddTrials and ApplyFeedback go straight to the log.
func (s *Store) Healthy() bool { return s.healthy.Load() }

// Backlog reports the batches waiting in the write-ahead log and their
// size, for readiness and metrics.
func (s *Store) Backlog() (batches int, bytes int64) { return s.wal.backlog() }

func (s *Store) k(suffix string) string { return s.opt.Prefix + suffix }

func (s *Store) regKey(b store.Bucket) string { return s.opt.Prefix + "reg:" + string(b) }

// Put stores a registry record and tells every replica (see Subscribe).
func (s *Store) Put(ctx context.Context, b store.Bucket, key string, val []byte) error {
	_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.regKey(b), key, val)
		p.Publish(ctx, s.kChannel, "put "+string(b)+"/"+key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis put %s/%s: %w", b, key, err)
	}
	return nil
}

// Delete removes a registry record and tells every replica; deleting a
// missing one is not an error.
func (s *Store) Delete(ctx context.Context, b store.Bucket, key string) error {
	_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, s.regKey(b), key)
		p.Publish(ctx, s.kChannel, "delete "+string(b)+"/"+key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis delete %s/%s: %w", b, key, err)
	}
	return nil
}

// ErrContended is returned by Update when the record changed under it on
// every attempt.
var ErrContended = errors.New("the record kept changing under the update; retry")

// maxUpdateAttempts bounds Update's compare-and-set retries. Every failed
// attempt means another writer's change went in, so it is only reached
// under that many concurrent changes to one record.
const maxUpdateAttempts = 64

// casScript writes one registry record only if it is still what the
// caller read, and tells every replica.
//
//	KEYS[1]  the bucket's hash
//	ARGV[1]  field (the record key)
//	ARGV[2]  "1" when the caller read a value, "0" when it read none
//	ARGV[3]  the value read
//	ARGV[4]  "put" or "delete"
//	ARGV[5]  the value to put
//	ARGV[6]  the registry channel
//	ARGV[7]  "BUCKET/KEY" for the change notice
//
// It returns 1 when it wrote, 0 when the record had changed (nothing is
// written then).
var casScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
if ARGV[4] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[6], ARGV[4] .. ' ' .. ARGV[7])
return 1
`)

// Update changes one registry record atomically across replicas: f gets
// the stored value (nil when there is none) and returns the value to
// store, or nil to delete the record; the result is written only if the
// record is still what f was given (a compare-and-set in a Lua script),
// else f runs again on the newer value, at most maxUpdateAttempts times
// (then ErrContended). f may run more than once, so it must not have
// effects beyond its result. An error from f aborts the change and is
// returned as it is. Update returns what is stored afterwards (nil when
// nothing is) and tells every replica of a change.
func (s *Store) Update(ctx context.Context, b store.Bucket, key string, f func(cur []byte) ([]byte, error)) ([]byte, error) {
	hash := s.regKey(b)
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		cur, err := s.admin.HGet(ctx, hash, key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			cur = nil
		case err != nil:
			return nil, fmt.Errorf("redis read %s/%s: %w", b, key, err)
		}
		next, err := f(cur)
		if err != nil {
			return nil, err
		}
		if next == nil && cur == nil {
			return nil, nil
		}
		had, op := "0", "put"
		if cur != nil {
			had = "1"
		}
		if next == nil {
			op = "delete"
		}
		ok, err := casScript.Run(ctx, s.admin, []string{hash}, key, had, cur, op, next, s.kChannel, string(b)+"/"+key).Int()
		if err != nil {
			return nil, fmt.Errorf("redis update %s/%s: %w", b, key, err)
		}
		if ok == 1 {
			return next, nil
		}
	}
	return nil, fmt.Errorf("redis update %s/%s: %w", b, key, ErrContended)
}

// List returns every record of a bucket by key. While Redis is unreachable
// it fails; the caller keeps the snapshot it has.
func (s *Store) List(ctx context.Context, b store.Bucket) (map[string][]byte, error) {
	m, err := s.admin.HGetAll(ctx, s.regKey(b)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis list %s: %w", b, err)
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// Meta returns a metadata value, or nil when unset.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	v, err := s.admin.HGet(ctx, s.kMeta, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis meta %s: %w", key, err)
	}
	return v, nil
}

// SetMeta sets a metadata value.
func (s *Store) SetMeta(ctx context.Context, key string, val []byte) error {
	if err := s.admin.HSet(ctx, s.kMeta, key, val).Err(); err != nil {
		return fmt.Errorf("redis set meta %s: %w", key, err)
	}
	return nil
}

// SigningKey returns the token signing key shared by every replica: the
// first replica to ask creates a random 32-byte key (SET NX), and every
// one reads back the one that won.
func (s *Store) SigningKey(ctx context.Context) ([]byte, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := s.admin.SetNX(ctx, s.kSigning, key, 0).Err(); err != nil {
		return nil, fmt.Errorf("redis signing key: %w", err)
	}
	v, err := s.admin.Get(ctx, s.kSigning).Bytes()
	if err != nil {
		return nil, fmt.Errorf("redis signing key: %w", err)
	}
	if len(v) < 32 {
		return nil, fmt.Errorf("redis signing key %s holds %d bytes, want at least 32", s.kSigning, len(v))
	}
	return v, nil
}

// LoadCounters returns every counter as Redis holds it, read in one
// transaction so successes are never ahead of the trials they belong to.
// Trials still in this replica's write-ahead log are not included.
func (s *Store) LoadCounters(ctx context.Context) ([]counters.Entry, error) {
	var tr, su, rw *redis.MapStringStringCmd
	_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		tr = p.HGetAll(ctx, s.kTrials)
		su = p.HGetAll(ctx, s.kSuccesses)
		rw = p.HGetAll(ctx, s.kReward)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis load counters: %w", err)
	}
	idx := make(map[string]int, len(tr.Val()))
	out := make([]counters.Entry, 0, len(tr.Val()))
	add := func(m map[string]string, count func(e *counters.Entry) *uint64) {
		for f, v := range m {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			i, ok := idx[f]
			if !ok {
				k, ok := counters.DecodeKey(f)
				if !ok {
					continue
				}
				i = len(out)
				idx[f] = i
				out = append(out, counters.Entry{Key: k})
			}
			*count(&out[i]) = n
		}
	}
	add(tr.Val(), func(e *counters.Entry) *uint64 { return &e.Trials })
	add(su.Val(), func(e *counters.Entry) *uint64 { return &e.Successes })
	add(rw.Val(), func(e *counters.Entry) *uint64 { return &e.Reward })
	return out, nil
}

// SweepExpired does nothing: Redis expires dedupe keys by their TTL.
func (s *Store) SweepExpired(context.Context, int) (int, error) { return 0, nil }

// AddTrials adds trial deltas atomically in Redis, or, when Redis does not
// answer within OpTimeout, durably to the write-ahead log for replay. It
// fails only when the log is full (ErrWALFull) or broken.
func (s *Store) AddTrials(ctx context.Context, deltas map[counters.Key]uint64) error {
	deltas = nonZero(deltas)
	if len(deltas) == 0 {
		return nil
	}
	b := newBatch(false, deltas, nil, s.now())
	if s.healthy.Load() {
		_, err := s.attempt(ctx, b)
		if err == nil {
			return nil
		}
		if !uncertain(err) {
			return fmt.Errorf("redis add trials: %w", err)
		}
	}
	if err := s.wal.append(encodeBatch(b)); err != nil {
		return err
	}
	s.poke()
	return nil
}

func nonZero(m map[counters.Key]uint64) map[counters.Key]uint64 {
	for _, n := range m {
		if n == 0 {
			out := make(map[counters.Key]uint64, len(m))
			for k, n := range m {
				if n > 0 {
					out[k] = n
				}
			}
			return out
		}
	}
	return m
}

// ApplyFeedback applies ops in order and the pending trial deltas, all in
// one atomic script run: an event whose key Redis already holds is a
// duplicate; otherwise its trial and success keys count when new. The same
// event sent to two replicas is counted once.
//
// When Redis does not answer within OpTimeout, the batch is written to the
// write-ahead log (fsynced before ApplyFeedback returns) and the results
// are provisional: Duplicate only for an event this replica saw before
// while Redis was away, never TooMany (the item limit is applied when the
// batch is replayed), and no Trial or Success, since counting happens
// when the batch is replayed. It fails only when the log is full
// (ErrWALFull) or broken, or Redis rejects the script.
func (s *Store) ApplyFeedback(ctx context.Context, ops []store.FeedbackOp, pendingTrials map[counters.Key]uint64) ([]store.FeedbackResult, error) {
	pendingTrials = nonZero(pendingTrials)
	if len(ops) == 0 && len(pendingTrials) == 0 {
		return []store.FeedbackResult{}, nil
	}
	b := newBatch(true, pendingTrials, toKeyOps(ops), s.now())
	if s.healthy.Load() {
		res, err := s.attempt(ctx, b)
		if err == nil {
			s.overrideOutageDuplicates(b.ops, res)
			return res, nil
		}
		if !uncertain(err) {
			return nil, fmt.Errorf("redis apply feedback: %w", err)
		}
	}
	return s.provisional(b)
}

// attempt runs b's script once, bounded by OpTimeout.
func (s *Store) attempt(ctx context.Context, b *batch) ([]store.FeedbackResult, error) {
	actx, cancel := context.WithTimeout(ctx, s.opt.OpTimeout)
	defer cancel()
	res, _, err := s.apply(actx, s.rdb, b)
	if err == nil {
		s.releaseLater(b)
		return res, nil
	}
	if uncertain(err) && ctx.Err() == nil {
		// Not the caller's cancellation: Redis is down or too slow. Until
		// the background check says otherwise, writes go straight to the
		// log instead of waiting out OpTimeout each.
		s.setHealthy(false, err)
	}
	return nil, err
}

// apply runs b's script through c: the hot client for a first attempt,
// the admin client for a replay. Behind Sentinel, with replicas online, it
// also waits for them (applyAndWait).
func (s *Store) apply(ctx context.Context, c redis.UniversalClient, b *batch) ([]store.FeedbackResult, bool, error) {
	keys, args := s.scriptArgs(b, s.now())
	var v any
	var err error
	if n := s.replicas.Load(); n > 0 {
		read := s.opt.AdminTimeout
		if c == s.rdb {
			read = s.opt.ReadTimeout
		}
		v, err = applyAndWait(ctx, c, int(n), read, keys, args)
	} else {
		v, err = applyScript.Run(ctx, c, keys, args...).Result()
	}
	if err != nil {
		return nil, false, err
	}
	res, again, err := parseReply(v, len(b.ops))
	if again {
		s.again.Add(1)
	}
	return res, again, err
}

// uncertain reports whether err leaves it open whether Redis applied the
// batch or says Redis cannot take writes now: such a batch goes to the log
// and is replayed. Any other Redis error reply is a real failure.
func uncertain(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "NOTREADY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true // network errors, timeouts, cancellations, a closed pool
}

// provisional logs b and answers from the outage dedupe set.
func (s *Store) provisional(b *batch) ([]store.FeedbackResult, error) {
	res := make([]store.FeedbackResult, len(b.ops))
	b.prov = make([]byte, len(b.ops))
	s.outageMu.Lock()
	for i, op := range b.ops {
		if s.outage[op.EventKey] > 0 {
			res[i].Duplicate = true
			b.prov[i] = provDup
			continue
		}
		s.outage[op.EventKey]++
		b.prov[i] = provNew
	}
	s.outageN.Store(int64(len(s.outage)))
	s.outageMu.Unlock()
	if err := s.wal.append(encodeBatch(b)); err != nil {
		s.unmarkOutage(b)
		return nil, err
	}
	s.poke()
	return res, nil
}

func (s *Store) markOutage(b *batch) {
	if b.prov == nil {
		return
	}
	s.outageMu.Lock()
	for i, op := range b.ops {
		if b.prov[i] == provNew {
			s.outage[op.EventKey]++
		}
	}
	s.outageN.Store(int64(len(s.outage)))
	s.outageMu.Unlock()
}

func (s *Store) unmarkOutage(b *batch) {
	if b.prov == nil {
		return
	}
	s.outageMu.Lock()
	for i, op := range b.ops {
		if b.prov[i] == provNew {
			if s.outage[op.EventKey]--; s.outage[op.EventKey] <= 0 {
				delete(s.outage, op.EventKey)
			}
		}
	}
	s.outageN.Store(int64(len(s.outage)))
	s.outageMu.Unlock()
}

// overrideOutageDuplicates answers, as a duplicate, an event Redis counted
// now but that this replica already accepted provisionally and has not
// replayed yet: the client sent it twice; the replay will find it counted.
func (s *Store) overrideOutageDuplicates(ops []keyOp, res []store.FeedbackResult) {
	if s.outageN.Load() == 0 {
		return
	}
	s.outageMu.Lock()
	defer s.outageMu.Unlock()
	for i, op := range ops {
		if !res[i].Duplicate && s.outage[op.EventKey] > 0 {
			res[i] = store.FeedbackResult{Duplicate: true}
		}
	}
}

func (s *Store) releaseLater(b *batch) {
	s.releaseMu.Lock()
	if len(s.release) < maxRelease {
		s.release = append(s.release, s.k("batch:"+b.idHex()))
	}
	s.releaseMu.Unlock()
}

func (s *Store) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the background loop: check Redis, replay the log, release batch
// records, until Close.
func (s *Store) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.opt.CheckInterval)
	defer t.Stop()
	failing := false
	// The server's settings are checked once it answers, and again after
	// every time it did not: it may be another server then (a promoted
	// replica, a restarted one).
	check := true
	for {
		if !s.ping() {
			check = true
		} else {
			if check && s.ctx.Err() == nil {
				s.checkSettings()
				check = false
			}
			if s.sentinel {
				s.refreshReplicas(s.ctx)
			}
			if n, _ := s.wal.backlog(); n == 0 {
				s.setHealthy(true, nil)
				s.releaseRecords()
			} else if err := s.replay(); err != nil {
				if !failing && s.ctx.Err() == nil {
					s.log.Warn("write-ahead log replay paused", "backlog", n, "err", err)
				}
				failing = true
			} else if failing {
				s.log.Info("write-ahead log replayed")
				failing = false
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// ping checks that Redis answers at all; it marks the store unhealthy when
// it does not.
func (s *Store) ping() bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.DialTimeout+s.opt.ReadTimeout)
	err := s.rdb.Ping(ctx).Err()
	cancel()
	if s.ctx.Err() != nil {
		return false
	}
	if err != nil {
		s.setHealthy(false, err)
	}
	return err == nil
}

// setHealthy records whether writes can go to Redis, logging changes.
// A PING alone does not make the store healthy while the log holds
// batches: Redis may answer PING but not writes (CLIENT PAUSE WRITE, a
// read-only replica), so the first replayed batch is the probe.
func (s *Store) setHealthy(ok bool, err error) {
	if was := s.healthy.Swap(ok); was != ok {
		if ok {
			s.log.Info("redis writable again")
		} else {
			s.log.Warn("redis unreachable or not taking writes; writing to the write-ahead log", "err", err)
		}
	}
}

// replay applies logged batches in order until the log is empty or one
// fails; a failure leaves that batch first in line for the next round.
func (s *Store) replay() error {
	for s.ctx.Err() == nil {
		p, size, ok, err := s.wal.next()
		if err != nil {
			s.setHealthy(false, err)
			return err
		}
		if !ok {
			return nil
		}
		b, err := decodeBatch(p)
		if err != nil {
			err = fmt.Errorf("decode logged batch: %w", err)
			s.setHealthy(false, err)
			return err
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.opt.ReplayTimeout)
		_, _, err = s.apply(ctx, s.admin, b)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.setHealthy(false, err)
			}
			return fmt.Errorf("replay batch %s: %w", b.idHex(), err)
		}
		s.wal.confirm(size)
		s.unmarkOutage(b)
		s.setHealthy(true, nil)
	}
	return s.ctx.Err()
}

// releaseRecords deletes the records of batches confirmed on their first
// attempt, in chunks; a failure leaves them to expire.
func (s *Store) releaseRecords() {
	const chunk = 1000
	s.releaseMu.Lock()
	ids := s.release
	s.release = nil
	s.releaseMu.Unlock()
	for len(ids) > 0 && s.ctx.Err() == nil {
		n := min(chunk, len(ids))
		ctx, cancel := context.WithTimeout(s.ctx, s.opt.ReplayTimeout)
		err := s.admin.Unlink(ctx, ids[:n]...).Err()
		cancel()
		if err != nil {
			return
		}
		ids = ids[n:]
	}
}

// Subscribe returns a channel that receives a value whenever a replica
// (this one included) changed the registry, and whenever the subscription
// is (re-)established, since changes made before it took hold (or while
// the connection was lost) were not heard. Signals are coalesced: the receiver reloads the
// registry once per value. It reconnects by itself and closes the channel
// when ctx ends or the Store is closed.
func (s *Store) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ch)
		defer stop()
		defer cancel()
		s.subscribe(ctx, ch)
	}()
	return ch
}

func (s *Store) subscribe(ctx context.Context, ch chan<- struct{}) {
	fire := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	const pingEvery = time.Second
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps := s.admin.Subscribe(ctx)
		// A blocked receive does not watch ctx; closing the connection
		// ends it at once.
		stop := context.AfterFunc(ctx, func() { ps.Close() })
		if err := ps.Subscribe(ctx, s.kChannel); err == nil {
			awaitingPong := false
			for {
				msg, err := ps.ReceiveTimeout(ctx, pingEvery)
				if err != nil {
					var nerr net.Error
					if ctx.Err() == nil && !awaitingPong && errors.As(err, &nerr) && nerr.Timeout() {
						awaitingPong = ps.Ping(ctx) == nil
						if awaitingPong {
							continue
						}
					}
					break
				}
				awaitingPong = false
				switch m := msg.(type) {
				case *redis.Subscription:
					if m.Kind == "subscribe" {
						// Changes made between Subscribe's call (or the
						// last session) and now were not heard: say so.
						fire()
						backoff = 50 * time.Millisecond
					}
				case *redis.Message:
					fire()
				}
			}
		}
		stop()
		ps.Close()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
