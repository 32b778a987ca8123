#!/usr/bin/env bash
# Puts ONNX Runtime's shared library where the onnx backend looks for it by
# default: .cache/onnxruntime/libonnxruntime.so.1. The library comes from the
# npm package onnxruntime-node (pinned below), fetched with `npm pack` from the
# npm registry; nothing is installed and no package script runs.
# Idempotent: does nothing when the library is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.30.0
DEST=.cache/onnxruntime
LIB=$DEST/libonnxruntime.so.1

if [ -s "$LIB" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) arch=x64 ;;
  Linux/aarch64 | Linux/arm64) arch=arm64 ;;
  *) echo "onnxruntime.sh: no onnxruntime-node library for $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac

command -v npm >/dev/null || { echo "onnxruntime.sh: npm is needed (apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-node@$VERSION" >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$VERSION.tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
mkdir -p "$DEST"
install -m 0644 "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$LIB.tmp"
mv "$LIB.tmp" "$LIB"
echo "$VERSION" >"$DEST/VERSION"
echo "onnxruntime.sh: ONNX Runtime $VERSION in $LIB"
