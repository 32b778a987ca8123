package redislist

// Modes of the lookup script (ARGV[1]).
const (
	modeTop   = "top"   // ARGV[2] = n: the n best entries of a sorted set, and the ties of the n-th
	modeCands = "cands" // ARGV[2…] = candidates: their scores in a sorted set (ZMSCORE)
	modeJSON  = "json"  // ARGV[2] = the most bytes to read of a string
)

// Statuses of the script's answer, after the index of the key it read.
const (
	stOK   = "ok"   // then the data
	stType = "type" // the key holds another type: then its type
	stSize = "size" // a JSON value is too long: then its length
)

// lookupScript is the one round trip of a request. KEYS are the keys to try in
// order (the user's, the default); it answers {0} when none exists, else
// {i, status, …} for KEYS[i]:
//
//	top:   {i, "ok", {member, score, …}, {member, score, …}}  the n best, then
//	       up to n members (smallest first) with the n-th's score, when n were read
//	cands: {i, "ok", {score or false, …}}                      one per candidate
//	json:  {i, "ok", value}
//	       {i, "type", TYPE} or {i, "size", STRLEN}
//
// TYPE answers "none" for a missing key, which saves an EXISTS. ZMSCORE is
// called in chunks, as unpack has a limit on how many values it spreads.
// Scores stay the strings Redis formats (lossless), never Lua numbers,
// which Redis would truncate to integers.
const lookupScript = `
local key, src, t
for i = 1, #KEYS do
  t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' then key, src = KEYS[i], i; break end
end
if not key then return {0} end
local mode = ARGV[1]
if mode == 'json' then
  if t ~= 'string' then return {src, 'type', t} end
  local n = redis.call('STRLEN', key)
  if n > tonumber(ARGV[2]) then return {src, 'size', n} end
  return {src, 'ok', redis.call('GET', key)}
end
if t ~= 'zset' then return {src, 'type', t} end
if mode == 'cands' then
  local out = {}
  for i = 2, #ARGV, 500 do
    local s = redis.call('ZMSCORE', key, unpack(ARGV, i, math.min(i + 499, #ARGV)))
    for j = 1, #s do out[#out + 1] = s[j] end
  end
  return {src, 'ok', out}
end
local n = tonumber(ARGV[2])
local top = redis.call('ZREVRANGE', key, 0, n - 1, 'WITHSCORES')
local ties = {}
if #top == 2 * n then
  local s = top[2 * n]
  ties = redis.call('ZRANGEBYSCORE', key, s, s, 'WITHSCORES', 'LIMIT', 0, n)
end
return {src, 'ok', top, ties}
`
