#!/usr/bin/env bash
# Runs the gateway and the consumer in the foreground with their logs
# interleaved and prefixed; Ctrl-C stops both cleanly. `start.sh stop` stops a
# pipeline started from another terminal.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$ROOT/.local/run
mkdir -p "$RUN"
cd "$ROOT"

stop_pid() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}

if [ "${1:-}" = stop ]; then
  stop_pid "$RUN/gateway.pid"
  stop_pid "$RUN/consumer.pid"
  echo "[start] gateway and consumer stopped"
  exit 0
fi

export LOG_PRETTY=${LOG_PRETTY:-true}
# With a local cluster (RABBITMQ_NODES > 1, make start CLUSTER=1), both processes know every node.
if [ "${RABBITMQ_NODES:-1}" -gt 1 ] && [ -z "${AMQP_URL:-}" ]; then
  export AMQP_URL
  AMQP_URL=$(scripts/services.sh amqp-urls)
fi
if [ "${RABBITMQ_NODES:-1}" -gt 1 ]; then RABBITMQ_UI=${RABBITMQ_MGMT_PORT:-15682}; else RABBITMQ_UI=${RABBITMQ_MGMT_PORT:-15672}; fi
# With FerretDB (no mongod), let the processes add the log's lookup indexes on its backend.
if ! command -v mongod >/dev/null; then
  export FERRETDB_POSTGRESQL_URL=${FERRETDB_POSTGRESQL_URL:-postgresql://postgres:postgres@127.0.0.1:${PG_PORT:-5432}/ferretdb}
fi
colour() { printf '\033[%sm%s\033[0m' "$1" "$2"; }

run() { # name colour command...
  local name=$1 c=$2
  shift 2
  # exec keeps the pid the node process, so signals reach it directly.
  ( exec "$@" ) > >(sed -u "s/^/$(colour "$c" "[$name]") /") 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# The gateway's heap limits and malloc arenas keep it under 200 MB while it publishes a million
# rows (BENCHMARKS.md, gateway memory while publishing); bench/processes.ts and the Dockerfile
# launch it the same way.
GATEWAY_NODE_FLAGS=(--max-semi-space-size=8 --max-old-space-size=128)
run consumer 36 node --import tsx consumer/src/main.ts
run gateway 35 env MALLOC_ARENA_MAX=2 node "${GATEWAY_NODE_FLAGS[@]}" --import tsx gateway/src/main.ts

stopping=0
shutdown() {
  [ $stopping -eq 1 ] && return
  stopping=1
  echo
  echo "[start] stopping gateway and consumer..."
  stop_pid "$RUN/gateway.pid"
  stop_pid "$RUN/consumer.pid"
}
trap shutdown INT TERM

cat <<TXT
[start] GraphiQL:        http://localhost:${GATEWAY_PORT:-4000}/graphql
[start] RabbitMQ UI:     http://localhost:$RABBITMQ_UI (guest/guest)
[start] consumer health: http://localhost:${CONSUMER_PORT:-9464}/readyz  metrics: /metrics
[start] Ctrl-C stops both.
TXT

# Either process exiting ends the run (and stops the other).
while kill -0 "$(cat "$RUN/gateway.pid")" 2>/dev/null && kill -0 "$(cat "$RUN/consumer.pid")" 2>/dev/null; do
  sleep 0.5 || true
  [ $stopping -eq 1 ] && break
done
shutdown
wait 2>/dev/null || true
echo "[start] stopped"
