#!/usr/bin/env bash
# govulncheck (pinned) against the Go vulnerability database, built offline
# from the golang.org/x/vulndb module (the module proxy is the only network
# the build machines reach). Fails on a reachable vulnerability in a
# dependency; vulnerabilities in the standard library are reported (they are
# fixed by a newer Go toolchain, see docs/security.md) without failing.
set -euo pipefail
cd "$(dirname "$0")/.."
VULNDB=v0.0.0-20261105234957-e22db6528018
GOVULNCHECK=v1.9.0
gobin=$(go env GOPATH)/bin
go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK"
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
(cd "$db" && go mod init vulndb-fetch >/dev/null 2>&1 && go mod download "golang.org/x/vulndb@$VULNDB")
go run ./tools/vulndb -src "$(go env GOMODCACHE)/golang.org/x/vulndb@$VULNDB/data/osv" -out "$db/db"
out=$("$gobin/govulncheck" -db "file://$db/db" ./... 2>&1 || true)
echo "$out" | grep -E "^Vulnerability|Found in|Fixed in|Your code" || echo "$out" | tail -3
if echo "$out" | grep -E "^\s+Found in: " | grep -vq "@go1\."; then
  echo "vulncheck: a dependency has a reachable vulnerability (above)" >&2
  exit 1
fi
