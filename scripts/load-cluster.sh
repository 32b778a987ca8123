#!/usr/bin/env bash
# Multi-replica load run, used for docs/performance.md: the cost of sharing state.
#
#   scripts/load-cluster.sh                        # 1000 and 2000 rps, 20 s each
#   RATES="500 1000 2000" DURATION=30s scripts/load-cluster.sh
#
# Two setups, each behind one nginx (one worker, HTTP keep-alive to the upstreams), loaded by
# tools/loadgen (open loop: recommend calls at a fixed rate, each timed from when it was due; a
# click on 10% of them, so feedback is written to Redis too):
#   single    one gateway on one redis-server (AOF, appendfsync everysec, noeviction)
#   cluster   three gateways on a Redis Cluster of three masters with a replica each (AOF,
#             everysec, noeviction); every feedback write waits for its master's replica (WAIT)
# On a small machine everything (nginx, the gateways, the redis-servers, the load generator)
# shares the same cores, so this shows what sharing costs, not a speed-up.
#
# Settings (environment): RATES (default "1000 2000"), DURATION (20s), BASE_PORT (17000: redis on
# BASE_PORT…+6, gateways' HTTP on +101…+103 and gRPC on +201…+203, nginx on +300), OUT.
# Needs: go, redis-server, redis-cli, nginx, curl.
#
# Bounded: each load run stops by itself after DURATION (and is killed 30 s later if not).
# Traffic goes to 127.0.0.1 only. Every process is started here, on fresh directories, and
# killed by its pid on exit. Reports are written to OUT (default: a new /tmp directory).
set -euo pipefail

RATES=${RATES:-1000 2000}
DURATION=${DURATION:-20s}
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "DURATION must be seconds, like 20s" >&2; exit 2; }
BASE=${BASE_PORT:-17000}
for c in redis-server redis-cli nginx curl go; do
	command -v "$c" >/dev/null || { echo "$c not found" >&2; exit 1; }
done
NGINX=$(command -v nginx)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/modelgate-load-cluster.XXXXXX)
OUT=${OUT:-$WORK}
mkdir -p "$OUT"
LIMIT=$((${DURATION%s} + 30))

PIDS=()
stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
cleanup() {
	stop_all
	rm -rf "$WORK/run" "$WORK/bin"
}
trap cleanup EXIT

mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/modelgate" ./cmd/modelgate && go build -o "$WORK/bin/loadgen" ./tools/loadgen)

wait_for() { # what command...
	local what=$1
	shift
	for _ in $(seq 200); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "timed out waiting for $what" >&2
	exit 1
}

start_redis() { # port extra-args...
	local port=$1 dir=$WORK/run/redis-$1
	shift
	mkdir -p "$dir"
	redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no --save "" \
		--appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
		--logfile "$dir/redis.log" "$@" &
	PIDS+=($!)
	wait_for "redis on $port" redis-cli -p "$port" ping
}

start_gateway() { # index redis-url
	local i=$1 url=$2 dir=$WORK/run/gw-$1
	mkdir -p "$dir"
	(cd "$ROOT" && exec "$WORK/bin/modelgate" serve --config examples/demo/config-embedded.yaml \
		--data-dir "$dir" --http-addr "127.0.0.1:$((BASE + 100 + i))" --grpc-addr "127.0.0.1:$((BASE + 200 + i))" \
		--redis-url "$url" --log-level warn) 2>"$OUT/gateway-$SETUP-$i.log" &
	PIDS+=($!)
	wait_for "gateway $i" curl -fsS "http://127.0.0.1:$((BASE + 100 + i))/readyz"
}

start_nginx() { # gateway count
	local n=$1 dir=$WORK/run/nginx servers=""
	mkdir -p "$dir/tmp"
	for i in $(seq "$n"); do servers+="        server 127.0.0.1:$((BASE + 100 + i));"$'\n'; done
	cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
error_log error.log warn;
pid nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    upstream gateways {
$servers        keepalive 64;
    }
    server {
        listen 127.0.0.1:$((BASE + 300));
        location / {
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	"$NGINX" -p "$dir" -c nginx.conf -g "daemon off;" 2>"$dir/stderr.log" &
	PIDS+=($!)
	wait_for nginx curl -fsS "http://127.0.0.1:$((BASE + 300))/healthz"
}

run_load() {
	for rate in $RATES; do
		echo "== $SETUP: $rate rps for $DURATION through nginx" | tee -a "$OUT/$SETUP.txt"
		timeout "$LIMIT" "$WORK/bin/loadgen" -url "http://127.0.0.1:$((BASE + 300))" -endpoint home \
			-rate "$rate" -duration "$DURATION" -click 0.1 -window "$DURATION" 2>&1 | tee -a "$OUT/$SETUP.txt" ||
			echo "(loadgen reported failed calls)" | tee -a "$OUT/$SETUP.txt"
	done
}

SETUP=single
start_redis "$BASE"
start_gateway 1 "redis://127.0.0.1:$BASE/0"
start_nginx 1
run_load
stop_all
rm -rf "$WORK/run"

SETUP=cluster
addrs=()
for i in $(seq 6); do
	start_redis "$((BASE + i))" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
	addrs+=("127.0.0.1:$((BASE + i))")
done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$OUT/cluster-create.log"
wait_for "cluster_state:ok" bash -c "for p in $(seq -s ' ' $((BASE + 1)) $((BASE + 6))); do redis-cli -p \$p cluster info | grep -q cluster_state:ok || exit 1; done"
url="redis+cluster://$(IFS=,; echo "${addrs[*]}")"
for i in 1 2 3; do start_gateway "$i" "$url"; done
start_nginx 3
run_load
stop_all

echo "reports in $OUT"
