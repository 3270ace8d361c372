#!/usr/bin/env bash
# Local backing services on loopback, without Docker: PostgreSQL, Redis, RabbitMQ
# and a MongoDB wire-protocol server (mongod when installed, FerretDB otherwise).
#
#   scripts/services.sh up|down|status|restart SERVICE|stop SERVICE|start SERVICE|kill rabbitmq
#
# Idempotent: `up` starts what is not running and leaves the rest alone. Data lives
# under .local/ (wiped by `make clean`). Ports can be moved with PG_PORT, REDIS_PORT,
# AMQP_PORT, RABBITMQ_MGMT_PORT and MONGO_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# SERVICES_DIR moves data, logs and pid files elsewhere: with other ports, it runs
# a second, separate set of services (the fault-injection suite restarts its own).
LOCAL=${SERVICES_DIR:-$ROOT/.local}
RUN="$LOCAL/run"
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
AMQP_PORT=${AMQP_PORT:-5672}
RABBITMQ_MGMT_PORT=${RABBITMQ_MGMT_PORT:-15672}
MONGO_PORT=${MONGO_PORT:-27017}
FERRETDB_VERSION=v1.24.2
PG_DATABASES=(system1 system2 endput ferretdb)

say() { printf '[services] %s\n' "$*" >&2; }
fail() {
  say "ERROR: $1"
  [ -n "${2:-}" ] && say "see the log: $2" && tail -n 20 "$2" >&2 2>/dev/null || true
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name timeout_s log command...
  local name=$1 timeout=$2 log=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && fail "$name did not answer within ${timeout}s" "$log"
    sleep 0.2
  done
}

apt_updated=0
need_packages() { # package...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || fail "missing Debian packages: ${missing[*]} (run as root, or install them)"
  if [ $apt_updated -eq 0 ]; then
    say "apt-get update"
    apt-get update -qq >"$LOCAL/apt.log" 2>&1 || fail "apt-get update failed" "$LOCAL/apt.log"
    apt_updated=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$LOCAL/apt.log" 2>&1 || fail "apt-get install ${missing[*]} failed" "$LOCAL/apt.log"
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && echo "$d"; done | sort -V | tail -n 1
}

pg_ready() { PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

pg_up() {
  local bin data=$LOCAL/postgres log=$LOCAL/logs/postgres.log
  if pg_ready; then pg_databases; return 0; fi
  bin=$(pg_bin)
  if [ -z "$bin" ]; then need_packages postgresql; bin=$(pg_bin); fi
  [ -n "$bin" ] || fail "PostgreSQL binaries not found under /usr/lib/postgresql"
  command -v psql >/dev/null || need_packages postgresql-client
  mkdir -p "$data" "$RUN/postgres"
  touch "$log"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$data" "$RUN/postgres" "$log"; fi
  if [ ! -s "$data/PG_VERSION" ]; then
    say "initdb $data"
    as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >>"$log" 2>&1 ||
      fail "PostgreSQL initdb failed" "$log"
  fi
  as_postgres "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start \
    -o "-p $PG_PORT -k $RUN/postgres -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB" \
    >>"$log" 2>&1 || fail "PostgreSQL did not start" "$log"
  wait_for PostgreSQL 60 "$log" pg_ready
  pg_databases
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_databases() {
  local db
  for db in "${PG_DATABASES[@]}"; do
    if [ "$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc "select 1 from pg_database where datname='$db'")" != 1 ]; then
      psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "create database $db" >/dev/null
    fi
  done
}

pg_down() {
  local bin data=$LOCAL/postgres
  bin=$(pg_bin)
  [ -n "$bin" ] && [ -s "$data/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- Redis
redis_ready() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_up() {
  local log=$LOCAL/logs/redis.log
  redis_ready && return 0
  command -v redis-server >/dev/null || need_packages redis-server
  mkdir -p "$LOCAL/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$LOCAL/redis" --daemonize yes \
    --pidfile "$RUN/redis.pid" --logfile "$log" --appendonly yes --appendfsync everysec --save "" \
    || fail "Redis did not start" "$log"
  wait_for Redis 30 "$log" redis_ready
}

redis_down() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- RabbitMQ
rabbit_env() {
  export RABBITMQ_MNESIA_BASE=$LOCAL/rabbitmq/mnesia
  export RABBITMQ_LOG_BASE=$LOCAL/rabbitmq/log
  export RABBITMQ_ENABLED_PLUGINS_FILE=$LOCAL/rabbitmq/enabled_plugins
  export RABBITMQ_CONFIG_FILE=$LOCAL/rabbitmq/rabbitmq
  export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-tentativa-$AMQP_PORT@localhost}
  export RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_PID_FILE=$LOCAL/rabbitmq/rabbit.pid
}

rabbit_ready() { rabbit_env; rabbitmqctl -q await_startup --timeout 2 >/dev/null 2>&1 && port_open "$AMQP_PORT"; }

rabbit_up() {
  local base=$LOCAL/rabbitmq log=$LOCAL/logs/rabbitmq.log
  command -v rabbitmq-server >/dev/null || need_packages rabbitmq-server
  rabbit_env
  if port_open "$AMQP_PORT" && rabbit_ready; then return 0; fi
  mkdir -p "$base/mnesia" "$base/log"
  echo '[rabbitmq_management].' >"$base/enabled_plugins"
  cat >"$base/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
management.tcp.port = $RABBITMQ_MGMT_PORT
management.tcp.ip = 127.0.0.1
loopback_users.guest = true
vm_memory_high_watermark.relative = 0.4
disk_free_limit.absolute = 200MB
CONF
  if [ "$(id -u)" -eq 0 ]; then chown -R rabbitmq:rabbitmq "$base"; fi
  rabbitmq-server -detached >"$log" 2>&1 || fail "RabbitMQ did not start" "$base/log"
  local deadline=$((SECONDS + 90))
  until rabbitmqctl -q await_startup --timeout 5 >>"$log" 2>&1; do
    [ $SECONDS -ge $deadline ] && fail "RabbitMQ did not answer within 90s" "$(ls -t "$base"/log/*.log 2>/dev/null | head -n 1)"
    sleep 0.5
  done
  wait_for "RabbitMQ management" 30 "$log" port_open "$RABBITMQ_MGMT_PORT"
}

rabbit_down() {
  rabbit_env
  command -v rabbitmqctl >/dev/null || return 0
  rabbitmqctl -q shutdown >/dev/null 2>&1 || true
}

# SIGKILL of this set's node (a crash, not a shutdown): only the pid in its pid file, and only
# while that process is still the beam of this node.
rabbit_kill() {
  rabbit_env
  local pid
  pid=$(cat "$RABBITMQ_PID_FILE" 2>/dev/null) || fail "no RabbitMQ pid file at $RABBITMQ_PID_FILE"
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$RABBITMQ_NODENAME" ||
    fail "pid $pid is not the RabbitMQ node $RABBITMQ_NODENAME"
  kill -KILL "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  fail "RabbitMQ pid $pid survived SIGKILL"
}

# ---------------------------------------------------------------- MongoDB wire protocol
mongo_ready() { port_open "$MONGO_PORT"; }

ferretdb_bin() {
  local bin=$ROOT/.local/bin/ferretdb-server src=$ROOT/scripts/ferretdb
  if [ -x "$bin" ] && [ "$bin" -nt "$src/go.sum" ] && [ "$bin" -nt "$src/main.go" ]; then echo "$bin"; return; fi
  command -v go >/dev/null || fail "neither mongod nor Go (to build FerretDB) is on PATH"
  say "building FerretDB $FERRETDB_VERSION from the Go module proxy (first run only)"
  mkdir -p "$ROOT/.local/bin" "$LOCAL/logs"
  (cd "$src" && go build -o "$bin" .) >"$LOCAL/logs/ferretdb-build.log" 2>&1 ||
    fail "building FerretDB failed" "$LOCAL/logs/ferretdb-build.log"
  echo "$bin"
}

mongo_up() {
  local log
  mongo_ready && return 0
  if command -v mongod >/dev/null; then
    log=$LOCAL/logs/mongod.log
    mkdir -p "$LOCAL/mongod"
    mongod --bind_ip 127.0.0.1 --port "$MONGO_PORT" --dbpath "$LOCAL/mongod" --fork --logpath "$log" \
      --pidfilepath "$RUN/mongo.pid" >/dev/null || fail "mongod did not start" "$log"
  else
    local bin
    bin=$(ferretdb_bin)
    log=$LOCAL/logs/ferretdb.log
    pg_up
    nohup "$bin" -listen "127.0.0.1:$MONGO_PORT" -handler postgresql \
      -postgresql-url "postgres://postgres@127.0.0.1:$PG_PORT/ferretdb" >"$log" 2>&1 &
    echo $! >"$RUN/mongo.pid"
  fi
  wait_for "MongoDB-compatible server" 30 "$log" mongo_ready
}

mongo_down() {
  local pid
  if [ -s "$RUN/mongo.pid" ]; then
    pid=$(cat "$RUN/mongo.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$RUN/mongo.pid"
  fi
}

# ---------------------------------------------------------------- commands
status_line() { # name url ready-fn
  if "$3"; then printf '  %-10s up     %s\n' "$1" "$2"; else printf '  %-10s down   %s\n' "$1" "$2"; return 1; fi
}

status() {
  local rc=0
  status_line postgres "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/{system1,system2,endput}" pg_ready || rc=1
  status_line redis "redis://127.0.0.1:$REDIS_PORT" redis_ready || rc=1
  status_line rabbitmq "amqp://guest:guest@127.0.0.1:$AMQP_PORT  (UI http://127.0.0.1:$RABBITMQ_MGMT_PORT, guest/guest)" port_open_amqp || rc=1
  status_line mongo "mongodb://127.0.0.1:$MONGO_PORT ($(command -v mongod >/dev/null && echo mongod || echo FerretDB))" mongo_ready || rc=1
  return $rc
}
port_open_amqp() { port_open "$AMQP_PORT"; }

one() { # action service
  case "$2" in
    postgres) "pg_$1" ;;
    redis) "redis_$1" ;;
    rabbitmq) "rabbit_$1" ;;
    mongo) "mongo_$1" ;;
    *) fail "unknown service '$2' (postgres, redis, rabbitmq, mongo)" ;;
  esac
}

mkdir -p "$LOCAL/logs" "$RUN"
chmod 755 "$LOCAL" "$RUN"

case "${1:-}" in
  up)
    pg_up
    redis_up
    rabbit_up
    mongo_up
    say "all services answer:"
    status >&2
    ;;
  down)
    mongo_down
    rabbit_down
    redis_down
    pg_down
    say "stopped"
    ;;
  status) status ;;
  start) one up "${2:?service}" ;;
  stop) one down "${2:?service}" ;;
  kill)
    [ "${2:-}" = rabbitmq ] || fail "kill supports only rabbitmq"
    rabbit_kill
    ;;
  restart)
    one down "${2:?service}"
    one up "$2"
    ;;
  *)
    echo "usage: $0 up|down|status|start SERVICE|stop SERVICE|restart SERVICE|kill rabbitmq" >&2
    exit 2
    ;;
esac
