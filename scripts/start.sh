#!/usr/bin/env bash
# Runs the gateway and the consumer in the foreground with their logs
# interleaved and prefixed; Ctrl-C stops both cleanly. `start.sh stop` stops a
# pipeline started from another terminal. Each process is supervised on its own:
# one that exits unasked is started again after a backoff (1 s doubling to 30 s,
# back to 1 s after a run of 30 s or more), and the other keeps running.
# START_RUN_DIR (default .local/run) holds the pid files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${START_RUN_DIR:-$ROOT/.local/run}
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
  # The supervisor first, or it would start again what is stopped under it.
  if [ -s "$RUN/start.pid" ] && kill -0 "$(cat "$RUN/start.pid")" 2>/dev/null; then
    pid=$(cat "$RUN/start.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  stop_pid "$RUN/gateway.pid"
  stop_pid "$RUN/consumer.pid"
  echo "[start] gateway and consumer stopped"
  exit 0
fi
echo $$ >"$RUN/start.pid"
rm -f "$RUN/stopping"

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

# Starts `command` and starts it again whenever it exits, until the run is stopping.
supervise() { # name colour command...
  local name=$1 c=$2 delay=1 started pid code why
  shift 2
  trap 'exit 0' INT TERM
  while [ ! -e "$RUN/stopping" ]; do
    started=$SECONDS
    # exec keeps the pid the node process, so signals reach it directly.
    ( exec "$@" ) > >(sed -u "s/^/$(colour "$c" "[$name]") /") 2>&1 &
    pid=$!
    echo "$pid" >"$RUN/$name.pid"
    code=0
    wait "$pid" || code=$?
    [ -e "$RUN/stopping" ] && break
    if [ "$code" -gt 128 ]; then why="was killed by signal $((code - 128))"; else why="exited with code $code"; fi
    [ $((SECONDS - started)) -ge 30 ] && delay=1
    echo "[start] $name $why after $((SECONDS - started)) s; starting it again in ${delay} s (the other process keeps running)"
    sleep "$delay" &
    wait $! || true
    delay=$((delay * 2 > 30 ? 30 : delay * 2))
  done
}

run() { # name colour command...
  supervise "$@" &
  echo $! >"$RUN/$1.supervisor.pid"
}

# The gateway's heap limits and malloc arenas keep it under 200 MB while it publishes a million
# rows (BENCHMARKS.md, gateway memory while publishing); bench/processes.ts and the Dockerfile
# launch it the same way.
GATEWAY_NODE_FLAGS=(--max-semi-space-size=12 --max-old-space-size=128)
# With tracing on (OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT), the preload lets the
# OpenTelemetry instrumentations patch the client libraries before they load; off, it does nothing.
TRACING=(--import ./common/tracing-preload.ts)
run consumer 36 node "${TRACING[@]}" consumer/src/main.ts
# The gateway leads a session of its own, so that GATEWAY_NICE raises its scheduling group and not
# the consumer's (common/priority.ts). setsid runs it in place: this script's background jobs lead
# no process group, so the pid stays the node process's.
run gateway 35 setsid env MALLOC_ARENA_MAX=2 node "${GATEWAY_NODE_FLAGS[@]}" "${TRACING[@]}" gateway/src/main.ts

stopping=0
shutdown() {
  [ $stopping -eq 1 ] && return
  stopping=1
  echo
  echo "[start] stopping gateway and consumer..."
  touch "$RUN/stopping"
  stop_pid "$RUN/gateway.supervisor.pid"
  stop_pid "$RUN/consumer.supervisor.pid"
  stop_pid "$RUN/gateway.pid"
  stop_pid "$RUN/consumer.pid"
}
# HUP too: the gateway is in another session, so a closed terminal does not reach it.
trap shutdown INT TERM HUP

cat <<TXT
[start] GraphiQL:        http://localhost:${GATEWAY_PORT:-4000}/graphql
[start] RabbitMQ UI:     http://localhost:$RABBITMQ_UI (guest/guest)
[start] consumer health: http://localhost:${CONSUMER_PORT:-9464}/readyz  metrics: /metrics
[start] Ctrl-C stops both; either one that crashes is started again.
TXT

# The supervisors run until the run is stopped.
while [ $stopping -eq 0 ]; do
  sleep 0.5 || true
done
wait 2>/dev/null || true
rm -f "$RUN/stopping" "$RUN/start.pid"
echo "[start] stopped"
