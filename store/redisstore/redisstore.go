// Package redisstore is the shared state of many gateway replicas in Redis:
// the registry's records, metadata, the token signing key, the bandit
// counters, the feedback dedupe keys, the discounted-count snapshots, the
// report history, the off-policy sums and the linear-thompson sums. It implements the same small
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
// reported as counted (no Trial, Success or Reward) until Redis has it.
//
// # Servers and settings
//
// The URL names one server, with redis+sentinel:// the master that
// Sentinel names, or with redis+cluster:// a Redis Cluster (package
// redisurl). A failover looks like a short outage: writes go to the log
// until the promoted replica answers. Behind Sentinel and in a cluster a
// write is confirmed only once its master's online replicas have it
// (replicas.go), so the replica promoted holds every write that was not
// logged. Once a server answers, the store checks with CONFIG GET that it
// keeps an append-only file and does not evict keys (requiredSettings),
// and logs a warning naming the setting when it does not.
//
// # Keys
//
// Every key starts with Options.Prefix (P, default "modelgate:"). Redis
// 6.2 or later is needed (ZRANGE ... BYSCORE, COPY). The state of one
// endpoint E lives under P{E}: (layout.go), whose hash tag {E} puts it in
// one hash slot of a cluster: every script and transaction touches the
// keys of one endpoint only, and endpoints spread over the masters. (A
// Prefix holding a hash tag of its own puts every key in one slot.)
//
//	P reg:models, P reg:endpoints  hash  registry records, field = record key;
//	                               changed by one Lua script per change (casScript),
//	                               which publishes the change too
//	P registry                     pub/sub channel, "put|delete BUCKET/KEY" per change
//	P meta                         hash  metadata (Meta, SetMeta)
//	P signing_key                  string, 32 random bytes, created once (SET NX)
//	P endpoints                    set   the endpoints that have counters, for LoadCounters;
//	                               an endpoint is added before its first counter is written
//	P{E}:counters:trials           hash  field counters.Key.Encode ("E\x00arm\x00segment") -> trials
//	P{E}:counters:successes        hash  same fields -> successes
//	P{E}:counters:reward           hash  same fields -> reward units (value rewards)
//	P{E}:d:<dedupe key>            string "1", TTL = the op's Expires - its Now
//	                               + store.ExpiryGrace (min 1 s): event, trial
//	                               and success keys of FeedbackOp; for its
//	                               ItemsKey a set of the distinct items, same TTL;
//	                               for its RewardKey (d:r<prediction>) the
//	                               prediction's capped reward so far in units
//	P{E}:batch:<32 hex>            string, the recorded results of E's part of a
//	                               batch, TTL BatchTTL
//	P disc                         hash  field "endpoint\x00arm\x00segment" -> 40-byte
//	                               discounted-count snapshot (counters.Disc.MarshalBinary)
//	P{E}:hist:<segment>            hash  history points, field = decimal Unix seconds,
//	                               value = the point; HSETNX, so the first writer wins
//	P{E}:hist:index                set   E's history series keys, for pruning
//	P hist:endpoints               set   the endpoints with history, for pruning
//	P op:<endpoint>\x00<segment>\x00<minute>
//	                               hash  off-policy snapshots of one minute (decimal
//	                               Unix seconds), field = replica id -> JSON of that
//	                               replica's cumulative offpolicy.Minute
//	P op:touched                   zset  op keys, score = when last written (Unix ms,
//	                               the writer's clock), for OffPolicyOthers
//	P op:minutes                   zset  op keys, score = their minute, for
//	                               LoadOffPolicy and pruning
//	P{E}:shadow:<arm>             hash  a shadow's sums (package shadow), field ->
//	                               integer, by HINCRBY in one MULTI/EXEC per endpoint and flush
//	P{E}:shl:<prediction>
//	                               string  a shadowed prediction's lists (JSON),
//	                               TTL = to the end of its attribution window
//	                               + store.ExpiryGrace
//	P{E}:lin, P lin:index          linear-thompson sums (see linear.go), added
//	                               by HINCRBYFLOAT in one idempotent script per
//	                               endpoint and batch
//	P keys, P keys:used, P rl:<hash>  API keys and rate limits (keys.go)
//	P audit                        list  audit entries, newest first
//	P legacy_until                 string, Unix seconds: until then the first
//	                               layout's dedupe keys and batch records are
//	                               consulted (layout.go)
//
// A write batch (AddTrials, ApplyFeedback) that spans endpoints is applied
// as one script run per endpoint, each recorded under the batch's id in
// that endpoint's keys: each part is idempotent on its own, the
// write-ahead log keeps the whole batch, and its replay applies the parts
// that were not applied yet.
//
// The first layout (before Redis Cluster was supported) kept the counters,
// dedupe keys, batch records and history of every endpoint in global keys
// (P counters:trials, P d:KEY, ...). Open moves them to the layout above
// once, safely when several replicas start at once (layout.go). Replicas
// of the first layout's version must not share Redis with this one: they
// would keep writing the old keys.
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
	"slices"
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

	warned map[string]string // [node address + " "] setting -> the wrong value warned of; background loop only
	opt    Options
	log    *slog.Logger
	wal    *wal
	now    func() time.Time

	kChannel, kMeta, kSigning, kEndpoints, kHistEndpoints string
	kDisc, kOp, kOpTouched, kOpMinutes                    string

	healthy atomic.Bool
	// sentinel is set for a redis+sentinel:// URL; replicas is then the
	// master's online replicas at the last check, which every write waits
	// for (replicas.go). It stays 0 for a single server. cluster is set
	// for a redis+cluster:// URL; clusterReplicas then holds every
	// master's online replicas by address.
	sentinel, cluster bool
	replicas          atomic.Int32
	clusterReplicas   atomic.Pointer[map[string]int]
	// known remembers the endpoints this Store put in the endpoint index.
	known knownEndpoints
	// legacyUntil is P legacy_until as last read (layout.go), 0 when unset.
	legacyUntil atomic.Int64
	again       atomic.Int64 // batches Redis had applied already when replayed
	wake        chan struct{}
	ctx         context.Context // canceled by Close
	cancel      context.CancelFunc
	wg          sync.WaitGroup

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

	// linear holds the linear-thompson sum batches not yet in Redis.
	linear linearQueue
}

// maxRelease bounds the ids waiting for release; past it, records simply
// expire after BatchTTL.
const maxRelease = 100_000

// Open connects to Redis at url and opens the write-ahead log in
// opt.WALDir, whose batches are replayed in the background. The URL is
// redis://[user:pass@]HOST:PORT/DB, rediss://… (TLS) or
// redis+sentinel://[user:pass@]H1:26379,H2:26379/MASTER_NAME[/DB] (the
// master Sentinel names; the store follows failovers) or
// redis+cluster://[user:pass@]H1:6379,H2:6379,… (a Redis Cluster), as
// package redisurl reads them. Redis need not be up: writes go to the log
// until it is. Once it answers, a first-layout database is migrated (see
// layout.go) before Open returns. Once it answers, its persistence and eviction
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
		opt: opt, log: opt.Logger, now: time.Now, addr: u.Addr(), sentinel: u.Sentinel(), cluster: u.Cluster(),
		kChannel: opt.Prefix + "registry", kEndpoints: opt.Prefix + "endpoints", kHistEndpoints: opt.Prefix + "hist:endpoints",
		kMeta: opt.Prefix + "meta", kSigning: opt.Prefix + "signing_key",
		kDisc: opt.Prefix + "disc",
		kOp:   opt.Prefix + "op:", kOpTouched: opt.Prefix + "op:touched", kOpMinutes: opt.Prefix + "op:minutes",
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
	} else {
		if s.sentinel || s.cluster {
			s.refreshReplicas(ctx)
		}
		if err := s.migrate(ctx); err != nil {
			s.log.Warn("redis: could not move the first key layout's counters and history yet; the background loop retries", "addr", s.addr, "err", err)
		}
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

func (s *Store) regKey(b store.Bucket) string { return s.opt.Prefix + "reg:" + string(b) }

// Put stores a registry record and tells every replica (see Subscribe).
func (s *Store) Put(ctx context.Context, b store.Bucket, key string, val []byte) error {
	if _, err := s.writeAndTell(ctx, s.regKey(b), key, val, "put", string(b)+"/"+key); err != nil {
		return fmt.Errorf("redis put %s/%s: %w", b, key, err)
	}
	return nil
}

// Delete removes a registry record and tells every replica; deleting a
// missing one is not an error.
func (s *Store) Delete(ctx context.Context, b store.Bucket, key string) error {
	if _, err := s.writeAndTell(ctx, s.regKey(b), key, nil, "delete", string(b)+"/"+key); err != nil {
		return fmt.Errorf("redis delete %s/%s: %w", b, key, err)
	}
	return nil
}

// writeAndTell puts (val) or deletes (val nil, op "delete") field of the
// hash key and publishes the change as "op what" on the registry
// channel, in one script run (casScript, unconditionally): one key, so a
// cluster takes it, and the notice never precedes the change. It returns
// whether the field was there before a delete.
func (s *Store) writeAndTell(ctx context.Context, key, field string, val []byte, op, what string) (bool, error) {
	n, err := casScript.Run(ctx, s.admin, []string{key}, field, "*", "", op, val, s.kChannel, what).Int()
	return n == 1, err
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
//	ARGV[2]  "1" when the caller read a value, "0" when it read none, "*"
//	         to write whatever is stored (then it returns 1 when a deleted
//	         field was there, else 0)
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
elseif ARGV[2] == '0' and cur then
  return 0
end
local n = 1
if ARGV[4] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  n = redis.call('HDEL', KEYS[1], ARGV[1])
  if ARGV[2] ~= '*' then n = 1 end
end
redis.call('PUBLISH', ARGV[6], ARGV[4] .. ' ' .. ARGV[7])
return n
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

// LoadCounters returns every counter as Redis holds it: those of every
// endpoint in the endpoint index. Each endpoint's successes are read
// before its trials, on one connection to its master, so successes are
// never ahead of the trials they belong to (both grow in one script run).
// Trials still in this replica's write-ahead log are not included.
func (s *Store) LoadCounters(ctx context.Context) ([]counters.Entry, error) {
	eps, err := s.endpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis load counters: %w", err)
	}
	var out []counters.Entry
	for part := range slices.Chunk(eps, chunk) {
		tr := make([]*redis.MapStringStringCmd, len(part))
		su := make([]*redis.MapStringStringCmd, len(part))
		rw := make([]*redis.MapStringStringCmd, len(part))
		_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range part {
				rw[i] = p.HGetAll(ctx, s.rewardKey(e))
				su[i] = p.HGetAll(ctx, s.successesKey(e))
				tr[i] = p.HGetAll(ctx, s.trialsKey(e))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("redis load counters: %w", err)
		}
		for i := range part {
			out = appendEntries(out, tr[i].Val(), su[i].Val(), rw[i].Val())
		}
	}
	return out, nil
}

// appendEntries adds the counters of one endpoint's hashes to out.
func appendEntries(out []counters.Entry, tr, su, rw map[string]string) []counters.Entry {
	idx := make(map[string]int, len(tr))
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
	add(tr, func(e *counters.Entry) *uint64 { return &e.Trials })
	add(su, func(e *counters.Entry) *uint64 { return &e.Successes })
	add(rw, func(e *counters.Entry) *uint64 { return &e.Reward })
	return out
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
// batch is replayed), and no Trial, Success or Reward, since counting happens
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

// apply runs b's script through c, the hot client for a first attempt,
// the admin client for a replay: one script run per endpoint's part,
// after the endpoints are indexed. The parts bound for one master go in
// one pipeline, with a WAIT for its replicas when it has any (replicas.go);
// in a cluster the masters are written concurrently. Any part's failure
// fails the batch, which is then logged and replayed whole: the parts
// applied already are recognised by their records.
func (s *Store) apply(ctx context.Context, c redis.UniversalClient, b *batch) ([]store.FeedbackResult, bool, error) {
	read := s.opt.AdminTimeout
	if c == s.rdb {
		read = s.opt.ReadTimeout
	}
	legacy := !s.cluster && s.legacy()
	if legacy && c == s.admin {
		// A batch logged by the first layout may have been applied there.
		if res, ok, err := s.legacyApplied(ctx, c, b); err != nil || ok {
			if ok {
				s.again.Add(1)
			}
			return res, ok, err
		}
	}
	parts := b.parts()
	eps := make([]string, len(parts))
	for i, p := range parts {
		eps[i] = p.endpoint
	}
	if err := s.indexEndpoints(ctx, c, read, eps); err != nil {
		return nil, false, err
	}
	type group struct {
		node  redis.UniversalClient
		wait  int
		parts []*part
		vals  []any
		err   error
	}
	var groups []*group
	byNode := map[redis.UniversalClient]*group{}
	for _, p := range parts {
		node, wait, err := s.master(ctx, c, s.recordKey(b, p))
		if err != nil {
			return nil, false, err
		}
		g := byNode[node]
		if g == nil {
			g = &group{node: node, wait: wait}
			byNode[node] = g
			groups = append(groups, g)
		}
		g.parts = append(g.parts, p)
	}
	now := s.now()
	run := func(g *group) {
		args := make([][]any, len(g.parts))
		keys := make([][]string, len(g.parts))
		for i, p := range g.parts {
			keys[i], args[i] = s.scriptArgs(b, p, now, legacy)
		}
		g.vals, g.err = runScripts(ctx, g.node, g.wait, read, keys, args)
	}
	if len(groups) == 1 {
		run(groups[0])
	} else {
		var wg sync.WaitGroup
		for _, g := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run(g)
			}()
		}
		wg.Wait()
	}
	res := make([]store.FeedbackResult, len(b.ops))
	again := true
	for _, g := range groups {
		if g.err != nil {
			return nil, false, g.err
		}
		for i, p := range g.parts {
			r, a, err := parseReply(g.vals[i], len(p.ops))
			if err != nil {
				return nil, false, err
			}
			again = again && a
			for j, at := range p.at {
				res[at] = r[j]
			}
		}
	}
	if again {
		s.again.Add(1)
	}
	return res, again, nil
}

// runScripts runs applyScript once per keys[i], args[i] in one pipeline on
// c, then WAIT wait when wait > 0 (pipeWait), and returns the replies. A
// server that has not cached the script (a promoted replica, a restarted
// server) gets it loaded, and the pipeline is sent again: the runs that
// went in are recognised by their records.
func runScripts(ctx context.Context, c redis.UniversalClient, wait int, read time.Duration, keys [][]string, args [][]any) ([]any, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(keys))
		err := pipeWait(ctx, c, wait, read, func(p redis.Pipeliner) {
			for i := range keys {
				cmds[i] = applyScript.EvalSha(ctx, p, keys[i], args[i]...)
			}
		})
		if attempt == 0 && slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return redis.HasErrorPrefix(c.Err(), "NOSCRIPT") }) {
			if err := applyScript.Load(ctx, c).Err(); err != nil {
				return nil, err
			}
			continue
		}
		vals := make([]any, len(cmds))
		for i, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				return nil, err
			}
			vals[i] = cmd.Val()
		}
		if err != nil {
			return nil, err
		}
		return vals, nil
	}
}

// uncertain reports whether err leaves it open whether Redis applied the
// batch or says Redis cannot take writes now: such a batch goes to the log
// and is replayed. Any other Redis error reply is a real failure.
func uncertain(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		// MOVED and ASK: a write sent to a master (replicas.go) by a slot
		// map that a failover or resharding made stale.
		for _, p := range []string{"LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "NOTREADY", "MOVED", "ASK"} {
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
		if s.outage[op.outageKey()] > 0 {
			res[i].Duplicate = true
			b.prov[i] = provDup
			continue
		}
		s.outage[op.outageKey()]++
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
			s.outage[op.outageKey()]++
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
			if k := op.outageKey(); s.outage[k] <= 1 {
				delete(s.outage, k)
			} else {
				s.outage[k]--
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
		if !res[i].Duplicate && s.outage[op.outageKey()] > 0 {
			res[i] = store.FeedbackResult{Duplicate: true}
		}
	}
}

func (s *Store) releaseLater(b *batch) {
	parts := b.parts()
	s.releaseMu.Lock()
	if len(s.release)+len(parts) <= maxRelease {
		for _, p := range parts {
			s.release = append(s.release, s.recordKey(b, p))
		}
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
		if cc, ok := s.admin.(*redis.ClusterClient); ok && !s.healthy.Load() {
			// A dead master's errors alone do not make go-redis reload
			// the slot map; a promoted replica is found by reloading it.
			cc.ReloadState(s.ctx)
			s.rdb.(*redis.ClusterClient).ReloadState(s.ctx)
		}
		if !s.ping() {
			check = true
		} else {
			if check && s.ctx.Err() == nil {
				s.checkSettings()
				if err := s.migrate(s.ctx); err != nil && s.ctx.Err() == nil {
					s.log.Warn("redis: could not move the first key layout's counters and history", "addr", s.addr, "err", err)
				}
				check = false
			}
			if s.sentinel || s.cluster {
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
	const chunk = 10 * chunk
	s.releaseMu.Lock()
	ids := s.release
	s.release = nil
	s.releaseMu.Unlock()
	for len(ids) > 0 && s.ctx.Err() == nil {
		n := min(chunk, len(ids))
		ctx, cancel := context.WithTimeout(s.ctx, s.opt.ReplayTimeout)
		// One key per UNLINK: the records are of many endpoints, and so of
		// many hash slots.
		_, err := s.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids[:n] {
				p.Unlink(ctx, id)
			}
			return nil
		})
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
		if cc, ok := s.admin.(*redis.ClusterClient); ok {
			// The node may have died: find the slot's master anew.
			cc.ReloadState(ctx)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
