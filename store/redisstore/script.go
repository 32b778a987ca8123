package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/store"
)

// applyScript applies one endpoint's part of a batch atomically and at
// most once. Its keys are all of one endpoint (P{E}: below), so in a Redis
// Cluster they are of one hash slot.
//
//	KEYS[1]   batch record  P{E}:batch:<id>
//	KEYS[2]   trials hash   P{E}:counters:trials
//	KEYS[3]   successes     P{E}:counters:successes
//	KEYS[4]   reward units  P{E}:counters:reward
//	KEYS[5..] per op, five dedupe keys: event, trial, success, the
//	          prediction's set of distinct items, and its capped reward so
//	          far (P{E}:d:<key>; the event key stands in for an absent one),
//	          then, when ARGV[2] is "9", the first four in the first layout
//	          (P d:<key>; see layout.go), each copied to its new name when
//	          only it exists (the first layout kept no rewards)
//	ARGV[1]   seconds to keep the batch record
//	ARGV[2]   keys per op, "5" or "9"
//	ARGV[3]   n, the number of pending trial deltas, then n pairs
//	          (counter field, delta as a decimal string)
//	then per op: dedupe TTL in seconds, counter field, has_trial "1"/"0",
//	          has_success "1"/"0", item ("" for none or no limit), the
//	          most distinct items of the set, reward units ("0" for none)
//
// It returns {0, record} when it applied the part, {1, record} when the
// part had been applied before (nothing changes then). record is "r"
// followed by one character per op: "d" a duplicate event, "x" an event
// that named one item more than the set may hold (nothing changed), else a
// digit whose bit 1 says a trial and bit 2 a success was counted; then, for
// each accepted op with reward units, ";" op number (from 1, within the part) "=" the units
// it added "/" the prediction's capped reward afterwards. A prediction's
// reward is capped at counters.RewardUnit by store.AddReward's rule, in
// integers far below 2^53, which Lua's numbers hold exactly.
//
// Every check and increment happens inside the script, so concurrent
// replicas never lose or double an update (the read-modify-write race of
// Seldon's Redis router cannot happen). Counter deltas are passed as
// strings to HINCRBY, never through Lua numbers, so they stay exact.
var applyScript = redis.NewScript(strings.ReplaceAll(`
local UNIT = REWARD_UNIT
local done = redis.call('GET', KEYS[1])
if done then
  return {1, done}
end
local stride = tonumber(ARGV[2])
if stride == 9 then
  for k = 5, #KEYS, 9 do
    for j = 0, 3 do
      if redis.call('EXISTS', KEYS[k + j]) == 0 and redis.call('EXISTS', KEYS[k + 5 + j]) == 1 then
        redis.call('COPY', KEYS[k + 5 + j], KEYS[k + j])
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
local trials, successes, rewards, order = {}, {}, {}, {}
local res, added = {'r'}, {}
local k = 5
local i = 0
while a <= #ARGV do
  i = i + 1
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
    local units = tonumber(ARGV[a + 6])
    local add = 0
    if units > 0 then
      local before = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
      local after = math.min(before + math.min(units, UNIT), UNIT)
      if after > before then
        add = after - before
        redis.call('SET', KEYS[k + 4], string.format('%d', after), 'EX', ttl)
      else
        after = before
      end
      added[#added + 1] = ';' .. i .. '=' .. string.format('%d', add) .. '/' .. string.format('%d', after)
    end
    if (c > 0 or add > 0) and trials[field] == nil then
      trials[field], successes[field], rewards[field] = 0, 0, 0
      order[#order + 1] = field
    end
    if c % 2 == 1 then trials[field] = trials[field] + 1 end
    if c >= 2 then successes[field] = successes[field] + 1 end
    if add > 0 then rewards[field] = rewards[field] + add end
    code = tostring(c)
  end
  res[#res + 1] = code
  a = a + 7
  k = k + stride
end
for _, f in ipairs(order) do
  if trials[f] > 0 then redis.call('HINCRBY', KEYS[2], f, trials[f]) end
  if successes[f] > 0 then redis.call('HINCRBY', KEYS[3], f, successes[f]) end
  if rewards[f] > 0 then redis.call('HINCRBY', KEYS[4], f, string.format('%d', rewards[f])) end
end
local out = table.concat(res) .. table.concat(added)
redis.call('SET', KEYS[1], out, 'EX', ARGV[1])
return {0, out}
`, "REWARD_UNIT", strconv.Itoa(counters.RewardUnit)))

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
	stride := 5
	if legacy {
		stride = 9
	}
	keys = make([]string, 0, 4+stride*len(p.ops))
	keys = append(keys, s.recordKey(b, p), s.trialsKey(p.endpoint), s.successesKey(p.endpoint), s.rewardKey(p.endpoint))
	args = make([]any, 0, 3+2*len(p.deltas)+7*len(p.ops))
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
		rk, units := ev, uint64(0)
		if op.RewardKey != "" && op.Reward > 0 {
			rk, units = op.RewardKey, op.Reward
		}
		at := now
		if !op.Now.IsZero() {
			at = op.Now // the reading the caller checked the window with
		}
		keys = append(keys, dedupe+ev, dedupe+tk, dedupe+sk, dedupe+ik, dedupe+rk)
		if legacy {
			old := s.legacyKey("d:")
			keys = append(keys, old+ev, old+tk, old+sk, old+ik)
		}
		args = append(args, ttlSeconds(op.Expires, at), op.Counter.Encode(), ht, hs, item, strconv.Itoa(op.MaxItems),
			strconv.FormatUint(units, 10))
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
	rec, rewards, _ := strings.Cut(rec, ";")
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
	if err := parseRewards(rewards, res); err != nil {
		return nil, false, err
	}
	return res, flag == 1, nil
}

// parseRewards reads the reward part of a script reply (after the first
// ';'): per op with reward units, "op=added/total", separated by ';'.
func parseRewards(s string, res []store.FeedbackResult) error {
	if s == "" {
		return nil
	}
	for part := range strings.SplitSeq(s, ";") {
		num, val, ok1 := strings.Cut(part, "=")
		add, total, ok2 := strings.Cut(val, "/")
		i, err1 := strconv.Atoi(num)
		a, err2 := strconv.ParseUint(add, 10, 64)
		t, err3 := strconv.ParseUint(total, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil || i < 1 || i > len(res) || a > t || t > counters.RewardUnit {
			return fmt.Errorf("script reply: bad reward %q", part)
		}
		res[i-1].Reward, res[i-1].RewardTotal = a, t
	}
	return nil
}
