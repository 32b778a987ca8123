#!/usr/bin/env bash
# Load test of the real modelgate binary on loopback, used for docs/performance.md.
#
#   scripts/load.sh                      # all phases, 20 s each
#   DURATION=15s PHASES="recommend feedback" scripts/load.sh
#
# Phases (PHASES, space separated; default all):
#   recommend   wrk closed loop: POST /v1/endpoints/home/recommend, user ids u0..u399
#   rate        vegeta open loop at RATE rps (fixed rate), same bodies; skipped without vegeta
#   floor       vegeta open loop at RATE rps on GET /healthz: what client, loopback and
#               net/http cost by themselves on this machine; skipped without vegeta
#   feedback    wrk: POST /v1/feedback, one click per call with real prediction tokens
#               (pre-fetched with recommend calls), each (token, item_id) unique, so every
#               event is accepted and fsynced
#   reject      wrk: POST /v1/feedback with a malformed token (rejection path, no disk write)
#
# Settings (environment): DURATION (seconds, default 20s), THREADS (2), CONNS (8), RATE (1000),
# MAX_REQUESTS (1000000), TOKENS (20000), HTTP_PORT (18181), GRPC_PORT (19191), MG_BIN, OUT.
#
# Needs: go (unless MG_BIN is set), wrk (apt-get install wrk), curl; optionally vegeta
# (go install github.com/tsenart/vegeta/v12@v12.13.0) for the fixed-rate phase.
#
# Bounded: every client runs for DURATION under `timeout`, and each wrk thread stops
# itself after MAX_REQUESTS/THREADS requests. Traffic goes to 127.0.0.1 only. The
# server is started here on a fresh data dir and killed (by its pid) on exit. Reports are
# written to OUT (default: a new /tmp/modelgate-load.* directory, printed at the end).
set -euo pipefail

DURATION=${DURATION:-20s}
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "DURATION must be seconds, like 20s" >&2; exit 2; }
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
RATE=${RATE:-1000}
MAX_REQUESTS=${MAX_REQUESTS:-1000000}
TOKENS=${TOKENS:-20000}
HTTP_ADDR=127.0.0.1:${HTTP_PORT:-18181}
GRPC_ADDR=127.0.0.1:${GRPC_PORT:-19191}
PHASES=${PHASES:-recommend rate floor feedback reject}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/modelgate-load.XXXXXX)
OUT=${OUT:-$WORK}
BASE=http://$HTTP_ADDR
secs=${DURATION%s}
LIMIT=$((secs + 30))

SERVER_PID=
cleanup() {
	if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	# keep the reports (*.txt, server.log); drop the data dir, tokens, scripts and raw results
	rm -rf "$WORK/data" "$WORK/tok" "$WORK"/*.bin "$WORK"/*.lua "$WORK/targets.jsonl" "$WORK/modelgate"
	if [[ "$OUT" != "$WORK" ]] || ! compgen -G "$WORK/*.txt" >/dev/null; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [[ -z "${MG_BIN:-}" ]]; then
	MG_BIN=$WORK/modelgate
	(cd "$ROOT" && go build -o "$MG_BIN" ./cmd/modelgate)
fi

if curl -s -o /dev/null --max-time 1 "$BASE/healthz"; then
	echo "something already listens on $HTTP_ADDR: set HTTP_PORT/GRPC_PORT" >&2
	exit 1
fi
mkdir -p "$OUT" "$WORK/data" "$WORK/tok"
(cd "$ROOT" && exec "$MG_BIN" serve --config examples/demo/config.yaml --data-dir "$WORK/data" \
	--http-addr "$HTTP_ADDR" --grpc-addr "$GRPC_ADDR" --log-level warn) 2>"$OUT/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
	curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "$BASE/readyz" >/dev/null
kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited; see $OUT/server.log" >&2; exit 1; }

# Server CPU time (user+sys, seconds) from /proc.
cpu_secs() {
	awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$SERVER_PID/stat"
}

machine() {
	echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), client and server share them"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# --- Lua scripts --------------------------------------------------------------
cat >"$WORK/common.lua" <<'EOF'
-- Threads get an id; each stops after max_per_thread requests.
local threads, nthreads = {}, 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end
function all_threads() return threads end
max_per_thread = math.floor(tonumber(os.getenv("MAX_REQUESTS")) / tonumber(os.getenv("THREADS")))
sent = 0
function count_and_maybe_stop()
  sent = sent + 1
  if sent >= max_per_thread then wrk.thread:stop() end
end
EOF

cat >"$WORK/recommend.lua" <<'EOF'
dofile(os.getenv("LUA_DIR") .. "/common.lua")
local hdr = {["Content-Type"] = "application/json"}
local n = 0
function request()
  count_and_maybe_stop()
  -- users u0..u399, the two threads interleaved
  local uid = (n * 2 + tid * 7) % 400
  n = n + 1
  return wrk.format("POST", "/v1/endpoints/home/recommend", hdr,
    string.format('{"user_id":"u%d","k":10}', uid))
end
EOF

cat >"$WORK/collect.lua" <<'EOF'
-- Fetches prediction tokens into TOK_DIR/tokens.<tid>; stops at TOKENS/THREADS.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
local hdr = {["Content-Type"] = "application/json"}
local n, got, out = 0, 0, nil
local want = math.floor(tonumber(os.getenv("TOKENS")) / tonumber(os.getenv("THREADS")))
function init(args)
  out = io.open(os.getenv("TOK_DIR") .. "/tokens." .. tid, "w")
  out:setvbuf("line")
end
function request()
  local uid = (n * 2 + tid * 7) % 400
  n = n + 1
  return wrk.format("POST", "/v1/endpoints/home/recommend", hdr,
    string.format('{"user_id":"u%d","k":10}', uid))
end
function response(status, headers, body)
  if status == 200 and got < want then
    local id = body:match('"prediction_id":"([^"]+)"')
    if id then out:write(id, "\n"); got = got + 1 end
  end
  if got >= want then out:flush(); wrk.thread:stop() end
end
EOF

cat >"$WORK/feedback.lua" <<'EOF'
-- One click per call. Thread tid uses its own tokens; on each pass over them the
-- item id changes, so every event is new (accepted, fsynced), never a duplicate.
-- INVALID=1 sends a malformed token instead (rejected before any store access).
dofile(os.getenv("LUA_DIR") .. "/common.lua")
local hdr = {["Content-Type"] = "application/json"}
local toks, i, pass = {}, 0, 0
local invalid = os.getenv("INVALID") == "1"
accepted, duplicates, rejected, non200 = 0, 0, 0, 0
function init(args)
  if not invalid then
    for line in io.lines(os.getenv("TOK_DIR") .. "/tokens." .. tid) do toks[#toks + 1] = line end
  end
end
function request()
  count_and_maybe_stop()
  local tok
  if invalid then
    tok = "not-a-token-" .. tid
  else
    i = i + 1
    if i > #toks then i, pass = 1, pass + 1 end
    tok = toks[i]
  end
  return wrk.format("POST", "/v1/feedback", hdr, string.format(
    '{"events":[{"prediction_id":"%s","type":"click","item_id":"i%d"}]}', tok, pass))
end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1
  elseif body:find('"accepted":1', 1, true) then accepted = accepted + 1
  elseif body:find('"duplicates":1', 1, true) then duplicates = duplicates + 1
  else rejected = rejected + 1 end
end
function done(summary, latency, requests)
  local a, d, r, x = 0, 0, 0, 0
  for _, t in ipairs(all_threads()) do
    a = a + t:get("accepted"); d = d + t:get("duplicates")
    r = r + t:get("rejected"); x = x + t:get("non200")
  end
  io.write(string.format("events: accepted %d, duplicates %d, rejected %d, non-200 %d\n", a, d, r, x))
end
EOF

export LUA_DIR=$WORK TOK_DIR=$WORK/tok MAX_REQUESTS THREADS TOKENS

run_wrk() { # name lua-script path
	local name=$1 script=$2 path=$3 c0 c1
	echo "== $name: wrk -t$THREADS -c$CONNS -d$DURATION --latency POST $path"
	machine
	c0=$(cpu_secs)
	timeout "$LIMIT" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "$BASE$path"
	c1=$(cpu_secs)
	echo "server CPU during run: $(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}') s"
	echo
}

for phase in $PHASES; do
	case $phase in
	recommend)
		run_wrk recommend "$WORK/recommend.lua" /v1/endpoints/home/recommend 2>&1 | tee "$OUT/recommend.txt"
		;;
	rate)
		if ! command -v vegeta >/dev/null; then
			echo "== rate: skipped (vegeta not installed)"
			continue
		fi
		for u in $(seq 0 399); do
			printf '{"method":"POST","url":"%s/v1/endpoints/home/recommend","header":{"Content-Type":["application/json"]},"body":"%s"}\n' \
				"$BASE" "$(printf '{"user_id":"u%d","k":10}' "$u" | base64 -w0)"
		done >"$WORK/targets.jsonl"
		{
			echo "== rate: vegeta attack -rate=$RATE/s -duration=$DURATION (open loop)"
			machine
			c0=$(cpu_secs)
			timeout "$LIMIT" vegeta attack -format=json -targets="$WORK/targets.jsonl" -rate="$RATE/s" \
				-duration="$DURATION" -max-workers=64 >"$WORK/rate.bin"
			c1=$(cpu_secs)
			vegeta report "$WORK/rate.bin"
			vegeta report -type='hist[0,250us,500us,1ms,2ms,5ms,10ms]' "$WORK/rate.bin"
			echo "server CPU during run: $(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}') s"
			echo
		} 2>&1 | tee "$OUT/rate.txt"
		;;
	floor)
		if ! command -v vegeta >/dev/null; then
			echo "== floor: skipped (vegeta not installed)"
			continue
		fi
		{
			echo "== floor: vegeta attack -rate=$RATE/s -duration=$DURATION GET /healthz (open loop)"
			machine
			echo "GET $BASE/healthz" | timeout "$LIMIT" vegeta attack -rate="$RATE/s" -duration="$DURATION" \
				-max-workers=64 >"$WORK/floor.bin"
			vegeta report "$WORK/floor.bin"
			vegeta report -type='hist[0,250us,500us,1ms,2ms,5ms,10ms]' "$WORK/floor.bin"
			echo
		} 2>&1 | tee "$OUT/floor.txt"
		;;
	feedback)
		echo "== collecting $TOKENS prediction tokens"
		timeout 120 wrk -t"$THREADS" -c"$CONNS" -d60s -s "$WORK/collect.lua" "$BASE/v1/endpoints/home/recommend" >/dev/null
		wc -l "$WORK"/tok/tokens.*
		sleep 1
		run_wrk "feedback (valid tokens, 1 click per call, fsync)" "$WORK/feedback.lua" /v1/feedback 2>&1 | tee "$OUT/feedback.txt"
		;;
	reject)
		INVALID=1 run_wrk "feedback (malformed token: rejection path)" "$WORK/feedback.lua" /v1/feedback 2>&1 | tee "$OUT/reject.txt"
		;;
	*)
		echo "unknown phase $phase" >&2
		exit 2
		;;
	esac
done
echo "reports in $OUT; server log: $OUT/server.log (last lines below)"
tail -n 5 "$OUT/server.log" || true
