#!/usr/bin/env bash
# Loads the demo's precomputed lists into Redis: the "nightly batch" of
# examples/redis-lists/gen (mf@2's top 100 for users u0…u199, and a popular
# list for everyone else), through redis-cli --pipe.
#
#   examples/redis-lists/load.sh                     # redis://127.0.0.1:6379/0
#   REDIS_URL=redis://127.0.0.1:6380/0 examples/redis-lists/load.sh
#   USERS=400 examples/redis-lists/load.sh           # a list for every demo user
#
# Run it again at any time: each list is replaced whole (written to a
# temporary key, then renamed), as a real nightly job would.
set -euo pipefail

url=${REDIS_URL:-redis://127.0.0.1:6379/0}
users=${USERS:-200}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

command -v redis-cli >/dev/null || { echo "load.sh: redis-cli not found (Debian: apt-get install redis-tools)" >&2; exit 1; }
redis-cli -u "$url" PING >/dev/null || { echo "load.sh: no Redis answers at $url (start one: redis-server --port 6379)" >&2; exit 1; }

go run ./examples/redis-lists/gen -model examples/demo/models/mf/2 -users "$users" -k 100 -prefix recs:batch:nightly: |
	redis-cli -u "$url" --pipe
echo "load.sh: lists at $url: $(redis-cli -u "$url" --scan --pattern 'recs:batch:nightly:*' | wc -l) keys (the lists of the first $users users and recs:batch:nightly:popular)"
