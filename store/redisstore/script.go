package redisstore

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/store"
)

// applyScript applies one endpoint's part of a batch atomically and at
// most once. Its keys are all of one endpoint (P{E}: below), so in a Redis
// Cluster they are of one hash slot.
//
//	KEYS[1]   batch record  P{E}:batch:<id>
//	KEYS[2]   trials hash   P{E}:counters:trials
//	KEYS[3]   successes     P{E}:counters:successes
//	KEYS[4..] per op, four dedupe keys: event, trial, success, and the
//	          prediction's set of distinct items (P{E}:d:<key>; the event
//	          key stands in for an absent one), then, when ARGV[2] is "8",
//	          the same four keys in the first layout (P d:<key>; see
//	          layout.go), each copied to its new name when only it exists
//	ARGV[1]   seconds to keep the batch record
//	ARGV[2]   keys per op, "4" or "8"
//	ARGV[3]   n, the number of pending trial deltas, then n pairs
//	          (counter field, delta as a decimal string)
//	then per op: dedupe TTL in seconds, counter field, has_trial "1"/"0",
//	          has_success "1"/"0", item ("" for none or no limit), the
//	          most distinct items of the set
//
// It returns {0, record} when it applied the part, {1, record} when the
// part had been applied before (nothing changes then). record is "r"
// followed by one character per op: "d" a duplicate event, "x" an event
// that named one item more than the set may hold (nothing changed), else a
// digit whose bit 1 says a trial and bit 2 a success was counted.
//
// Every check and increment happens inside the script, so concurrent
// replicas never lose or double an update (the read-modify-write race of
// Seldon's Redis router cannot happen). Counter deltas are passed as
// strings to HINCRBY, never through Lua numbers, so they stay exact.
var applyScript = redis.NewScript(`
local done = redis.call('GET', KEYS[1])
if done then
  return {1, done}
end
local stride = tonumber(ARGV[2])
if stride == 8 then
  for k = 4, #KEYS, 8 do
    for j = 0, 3 do
      if redis.call('EXISTS', KEYS[k + j]) == 0 and redis.call('EXISTS', KEYS[k + 4 + j]) == 1 then
        redis.call('COPY', KEYS[k + 4 + j], KEYS[k + j])
      end
    end
  end
end
local n = tonumber(ARGV[3])
local a = 4
for _ = 1, n do
  redis.call('HINCRBY', KEYS[2], ARGV[a], ARGV[a + 1])
  a = a + 2
end
local trials, successes, order = {}, {}, {}
local res = {'r'}
local k = 4
while a <= #ARGV do
  local ttl, field, item = ARGV[a], ARGV[a + 1], ARGV[a + 4]
  local code = 'd'
  local admit = redis.call('EXISTS', KEYS[k]) == 0
  if admit and item ~= '' and redis.call('SISMEMBER', KEYS[k + 3], item) == 0 then
    if redis.call('SCARD', KEYS[k + 3]) < tonumber(ARGV[a + 5]) then
      redis.call('SADD', KEYS[k + 3], item)
      redis.call('EXPIRE', KEYS[k + 3], ttl)
    else
      admit, code = false, 'x'
    end
  end
  if admit then
    redis.call('SET', KEYS[k], '1', 'EX', ttl)
    local c = 0
    if ARGV[a + 2] == '1' and redis.call('SET', KEYS[k + 1], '1', 'NX', 'EX', ttl) then
      c = c + 1
    end
    if ARGV[a + 3] == '1' and redis.call('SET', KEYS[k + 2], '1', 'NX', 'EX', ttl) then
      c = c + 2
    end
    if c > 0 and trials[field] == nil then
      trials[field], successes[field] = 0, 0
      order[#order + 1] = field
    end
    if c % 2 == 1 then trials[field] = trials[field] + 1 end
    if c >= 2 then successes[field] = successes[field] + 1 end
    code = tostring(c)
  end
  res[#res + 1] = code
  a = a + 6
  k = k + stride
end
for _, f in ipairs(order) do
  if trials[f] > 0 then redis.call('HINCRBY', KEYS[2], f, trials[f]) end
  if successes[f] > 0 then redis.call('HINCRBY', KEYS[3], f, successes[f]) end
end
local out = table.concat(res)
redis.call('SET', KEYS[1], out, 'EX', ARGV[1])
return {0, out}
`)

// ttlSeconds is a dedupe key's TTL: until exp as of now, plus
// store.ExpiryGrace, because Redis starts counting when the script runs,
// a moment after the caller read its clock to check the event's window.
func ttlSeconds(exp, now time.Time) string {
	d := exp.Add(store.ExpiryGrace).Sub(now)
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return strconv.FormatInt(max(s, 1), 10)
}

// recordKey is where p's part of b is recorded as applied.
func (s *Store) recordKey(b *batch, p *part) string {
	return s.endpointKey(p.endpoint, "batch:"+b.idHex())
}

// scriptArgs builds the script's keys and arguments for p's part of b as
// of now; legacy adds the first layout's dedupe keys.
func (s *Store) scriptArgs(b *batch, p *part, now time.Time, legacy bool) (keys []string, args []any) {
	stride := 4
	if legacy {
		stride = 8
	}
	keys = make([]string, 0, 3+stride*len(p.ops))
	keys = append(keys, s.recordKey(b, p), s.trialsKey(p.endpoint), s.successesKey(p.endpoint))
	args = make([]any, 0, 3+2*len(p.deltas)+6*len(p.ops))
	args = append(args, ttlString(s.opt.BatchTTL), strconv.Itoa(stride), strconv.Itoa(len(p.deltas)))
	for k, n := range p.deltas {
		args = append(args, k.Encode(), strconv.FormatUint(n, 10))
	}
	dedupe := s.endpointKey(p.endpoint, "d:")
	for _, op := range p.ops {
		ev, tk, sk, ik := op.EventKey, op.EventKey, op.EventKey, op.EventKey
		ht, hs, item := "0", "0", ""
		if op.TrialKey != "" {
			tk, ht = op.TrialKey, "1"
		}
		if op.SuccessKey != "" {
			sk, hs = op.SuccessKey, "1"
		}
		if op.ItemsKey != "" && op.Item != "" {
			ik, item = op.ItemsKey, op.Item
		}
		at := now
		if !op.Now.IsZero() {
			at = op.Now // the reading the caller checked the window with
		}
		keys = append(keys, dedupe+ev, dedupe+tk, dedupe+sk, dedupe+ik)
		if legacy {
			old := s.legacyKey("d:")
			keys = append(keys, old+ev, old+tk, old+sk, old+ik)
		}
		args = append(args, ttlSeconds(op.Expires, at), op.Counter.Encode(), ht, hs, item, strconv.Itoa(op.MaxItems))
	}
	return keys, args
}

// parseReply turns the script's reply into results, one per op.
func parseReply(v any, nops int) (res []store.FeedbackResult, replayed bool, err error) {
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return nil, false, fmt.Errorf("unexpected script reply %v", v)
	}
	flag, _ := arr[0].(int64)
	rec, _ := arr[1].(string)
	if len(rec) != nops+1 || rec[0] != 'r' {
		return nil, false, fmt.Errorf("script reply %q does not match %d ops", rec, nops)
	}
	res = make([]store.FeedbackResult, nops)
	for i := range res {
		switch c := rec[i+1]; c {
		case 'd':
			res[i].Duplicate = true
		case 'x':
			res[i].TooMany = true
		case '0', '1', '2', '3':
			res[i].Trial = (c-'0')&1 != 0
			res[i].Success = (c-'0')&2 != 0
		default:
			return nil, false, fmt.Errorf("script reply %q: bad code %q", rec, c)
		}
	}
	return res, flag == 1, nil
}
