#!/usr/bin/env bash
# Makes sure Debian's chromium is installed for the dashboard's browser test
# (playwright-core drives it; its own browser downloads need the internet).
set -euo pipefail
CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
  if ! command -v apt-get >/dev/null; then
    echo "[chromium] ERROR: $CHROMIUM is missing and apt-get is not available; install chromium by hand" >&2
    exit 1
  fi
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "[chromium] ERROR: installing chromium needs root (or sudo)" >&2; exit 1; }
    SUDO=(sudo)
  fi
  echo "[chromium] installing Debian's chromium with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq >&2
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
  [ -x "$CHROMIUM" ] || { echo "[chromium] ERROR: apt-get finished but $CHROMIUM is still missing" >&2; exit 1; }
fi
"$CHROMIUM" --version
