#!/usr/bin/env bash
# Three gateway replicas on the bundled demo, sharing one local redis-server.
# Ctrl-C stops everything. Needs redis-server on PATH (apt-get install redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${REDIS_PORT:-6390}
config=examples/demo/config.yaml
bash scripts/onnxruntime.sh || { echo "no ONNX Runtime: serving the demo without its onnx arm" >&2; config=examples/demo/config-embedded.yaml; }
mkdir -p data-redis
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$PWD/data-redis" --appendonly yes --appendfsync always \
  --maxmemory-policy noeviction --save "" --daemonize no >data-redis/redis.log 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
for i in 1 2 3; do
  bin/modelgate serve --config "$config" --data-dir "data-r$i" \
    --http-addr "127.0.0.1:808$i" --grpc-addr "127.0.0.1:909$i" --redis-url "redis://127.0.0.1:$PORT/0" &
  pids+=($!)
done
echo "replicas on http://127.0.0.1:8081, :8082, :8083 sharing redis on :$PORT"
echo "try: bin/modelgate demo-traffic --server http://127.0.0.1:8082"
wait
