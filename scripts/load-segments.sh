#!/usr/bin/env bash
# Open-loop load with many distinct segment values, against the real binary on loopback
# (docs/performance.md, "Many segments"). For each count in SEGMENTS it starts a fresh
# server (embedded store, the demo's two embedding/v1 arms behind an endpoint with
# segment_by: [surface]), sends RATE recommends per second for DURATION with that many
# distinct surface values and USERS distinct user ids, clicks one prediction in ten,
# records the server's RSS, then sends SIGTERM and times the exit.
#
#   scripts/load-segments.sh                         # 10, 5000 and 100000 values, 60 s each
#   SEGMENTS="10 5000" DURATION=20s scripts/load-segments.sh
#
# Settings: SEGMENTS, DURATION (60s), RATE (1000), USERS (1000000), HTTP_PORT (18281),
# GRPC_PORT (19291), MG_BIN, OUT (a directory to keep each run's server log in). Traffic goes
# to 127.0.0.1 only; every run stops by itself.
set -euo pipefail
SEGMENTS=${SEGMENTS:-10 5000 100000}
DURATION=${DURATION:-60s}
RATE=${RATE:-1000}
USERS=${USERS:-1000000}
HTTP_ADDR=127.0.0.1:${HTTP_PORT:-18281}
GRPC_ADDR=127.0.0.1:${GRPC_PORT:-19291}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/modelgate-segments.XXXXXX)
SERVER_PID=
cleanup() {
	if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -9 "$SERVER_PID"; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
if [[ -z "${MG_BIN:-}" ]]; then
	MG_BIN=$WORK/modelgate
	(cd "$ROOT" && go build -o "$MG_BIN" ./cmd/modelgate)
fi
(cd "$ROOT" && go build -o "$WORK/loadgen" ./tools/loadgen)
cat >"$WORK/config.yaml" <<YAML
models:
  - {name: mf, version: "1", backend: {type: embedded, path: $ROOT/examples/demo/models/mf/1}}
  - {name: mf, version: "2", backend: {type: embedded, path: $ROOT/examples/demo/models/mf/2}}
endpoints:
  - name: seg
    arms: [mf@1, mf@2]
    policy: {type: thompson, segment_by: [surface], min_share: 0.02}
    fallback: mf@1
report: {interval: 10s, retention: 720h}
limits: {shutdown_timeout: 10s}
YAML
for n in $SEGMENTS; do
	rm -rf "$WORK/data"
	"$MG_BIN" serve --config "$WORK/config.yaml" --data-dir "$WORK/data" \
		--http-addr "$HTTP_ADDR" --grpc-addr "$GRPC_ADDR" --log-level warn 2>"$WORK/server-$n.log" &
	SERVER_PID=$!
	for _ in $(seq 100); do curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
	echo "== $n distinct segment values, $RATE rps for $DURATION"
	"$WORK/loadgen" -url "http://$HTTP_ADDR" -endpoint seg -rate "$RATE" -duration "$DURATION" \
		-segments "$n" -users "$USERS" -pid "$SERVER_PID" || echo "(some requests failed)"
	curl -fsS "http://$HTTP_ADDR/v1/endpoints/seg/report" | python3 -c \
		'import json,sys; r=json.load(sys.stdin); print("report: %d segments listed, warnings %s" % (len(r["segments"]), r["health"]["warnings"]))'
	t0=$(date +%s.%N)
	kill -TERM "$SERVER_PID"
	wait "$SERVER_PID" || true
	t1=$(date +%s.%N)
	SERVER_PID=
	printf 'SIGTERM to exit: %.2f s (shutdown_timeout 10s)\n' "$(echo "$t1 - $t0" | bc)"
	echo "server log: $(grep -c '"level":"ERROR"' "$WORK/server-$n.log" || true) error lines, $(grep -c '"level":"WARN"' "$WORK/server-$n.log" || true) warnings"
	if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT" && cp "$WORK/server-$n.log" "$OUT/"; fi
done
