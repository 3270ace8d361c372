#!/usr/bin/env bash
# Local backing services on loopback, without Docker: PostgreSQL, Redis, RabbitMQ
# and a MongoDB wire-protocol server (mongod when installed, FerretDB otherwise).
#
#   scripts/services.sh up|down|status|restart SERVICE|stop SERVICE|start SERVICE|kill rabbitmq
#   scripts/services.sh amqp-urls      AMQP_URL for every RabbitMQ node
#   scripts/services.sh toxiproxy-bin  path of Toxiproxy's server (built on first use)
#
# Idempotent: `up` starts what is not running and leaves the rest alone. Data lives
# under .local/ (wiped by `make clean`). Ports can be moved with PG_PORT, REDIS_PORT,
# AMQP_PORT, RABBITMQ_MGMT_PORT and MONGO_PORT.
#
# RABBITMQ_NODES=3 runs RabbitMQ as a cluster of that many nodes instead of one:
# node i listens on AMQP_PORT+i-1 (default 5682..) and RABBITMQ_MGMT_PORT+i-1
# (default 15682..), with its own Erlang port mapper (RABBITMQ_EPMD_PORT, default
# AMQP_PORT-1000), so it never meets a single node started on the default ports.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# SERVICES_DIR moves data, logs and pid files elsewhere: with other ports, it runs
# a second, separate set of services (the fault-injection suite restarts its own).
LOCAL=${SERVICES_DIR:-$ROOT/.local}
RUN="$LOCAL/run"
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
RABBITMQ_NODES=${RABBITMQ_NODES:-1}
if [ "$RABBITMQ_NODES" -gt 1 ]; then
  AMQP_PORT=${AMQP_PORT:-5682}
  RABBITMQ_MGMT_PORT=${RABBITMQ_MGMT_PORT:-15682}
fi
AMQP_PORT=${AMQP_PORT:-5672}
RABBITMQ_MGMT_PORT=${RABBITMQ_MGMT_PORT:-15672}
RABBITMQ_EPMD_PORT=${RABBITMQ_EPMD_PORT:-$((AMQP_PORT - 1000))}
MONGO_PORT=${MONGO_PORT:-27017}
FERRETDB_VERSION=v1.24.2
TOXIPROXY_VERSION=v2.5.0
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
  if [ "$RABBITMQ_NODES" -gt 1 ]; then cluster_up; return; fi
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
  if [ "$RABBITMQ_NODES" -gt 1 ]; then cluster_down; return; fi
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

# ---------------------------------------------------------------- RabbitMQ cluster
# Debian's /usr/sbin wrappers switch to the rabbitmq user and its cookie: the
# cluster runs the scripts under /usr/lib/rabbitmq/bin directly, every node and
# every rabbitmqctl call sharing one cookie through HOME.
RABBIT_BIN=/usr/lib/rabbitmq/bin
cluster_base() { echo "$LOCAL/rabbitmq-cluster"; }
cluster_node() { echo "rq$1@localhost"; }

cluster_env() { # node-index
  local base dir
  base=$(cluster_base)
  dir=$base/rq$1
  export HOME=$base/home
  export ERL_EPMD_PORT=$RABBITMQ_EPMD_PORT
  export RABBITMQ_NODENAME
  RABBITMQ_NODENAME=$(cluster_node "$1")
  export RABBITMQ_NODE_PORT=$((AMQP_PORT + $1 - 1))
  export RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000 + $1 - 1))
  export RABBITMQ_CTL_DIST_PORT_MIN=$((AMQP_PORT + 30000))
  export RABBITMQ_CTL_DIST_PORT_MAX=$((AMQP_PORT + 30010))
  export RABBITMQ_MNESIA_BASE=$dir/mnesia
  export RABBITMQ_LOG_BASE=$dir/log
  export RABBITMQ_CONFIG_FILE=$dir/rabbitmq
  export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export RABBITMQ_PID_FILE=$dir/rabbit.pid
}

cluster_ctl() { # node-index rabbitmqctl-args...
  local i=$1
  shift
  # No cookie, no cluster (it was never started here): rabbitmqctl would only fail creating one,
  # and leave an erl_crash.dump behind.
  [ -s "$(cluster_base)/home/.erlang.cookie" ] || return 1
  (cluster_env "$i" && "$RABBIT_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@")
}

cluster_node_ready() { # node-index
  port_open $((AMQP_PORT + $1 - 1)) && cluster_ctl "$1" -q await_startup --timeout 2 >/dev/null 2>&1
}

cluster_members() { # node-index: running members as seen by that node
  cluster_ctl "$1" -q eval 'rabbit_mnesia:cluster_nodes(running).' 2>/dev/null | tr -d '[]\n ' | tr ',' '\n' | sed "s/'//g"
}

cluster_joined() { # every node ready and in node 1's cluster
  local i members
  members=$(cluster_members 1) || return 1
  for i in $(seq 1 "$RABBITMQ_NODES"); do
    grep -qx "$(cluster_node "$i")" <<<"$members" || return 1
  done
}

cluster_start_node() { # node-index
  local i=$1 dir base log
  base=$(cluster_base)
  dir=$base/rq$i
  log=$LOCAL/logs/rabbitmq-rq$i.log
  cluster_node_ready "$i" && return 0
  mkdir -p "$dir/mnesia" "$dir/log"
  echo '[rabbitmq_management].' >"$dir/enabled_plugins"
  cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$((AMQP_PORT + i - 1))
management.tcp.port = $((RABBITMQ_MGMT_PORT + i - 1))
management.tcp.ip = 127.0.0.1
loopback_users.guest = true
vm_memory_high_watermark.relative = 0.2
disk_free_limit.absolute = 200MB
cluster_partition_handling = pause_minority
CONF
  # A wait queue's at-least-once dead-letter worker that starts on a new leader before the
  # primary queue has one waits for confirms that never come, and resends only after this
  # timeout (3 minutes by default in 3.10): retries stall that long after a leader is killed.
  echo '[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 10000}]}].' >"$dir/advanced.config"
  (cluster_env "$i" && cd "$dir" && exec nohup "$RABBIT_BIN/rabbitmq-server" >"$log" 2>&1) &
}

cluster_up() {
  local base i started=$SECONDS
  command -v rabbitmq-server >/dev/null || need_packages rabbitmq-server
  base=$(cluster_base)
  mkdir -p "$base/home"
  if [ ! -s "$base/home/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$base/home/.erlang.cookie"
  fi
  chmod 400 "$base/home/.erlang.cookie"
  cluster_joined 2>/dev/null && return 0
  for i in $(seq 1 "$RABBITMQ_NODES"); do cluster_start_node "$i"; done
  for i in $(seq 1 "$RABBITMQ_NODES"); do
    wait_for "RabbitMQ node $(cluster_node "$i")" 180 "$LOCAL/logs/rabbitmq-rq$i.log" cluster_node_ready "$i"
  done
  for i in $(seq 2 "$RABBITMQ_NODES"); do
    grep -qx "$(cluster_node "$i")" <<<"$(cluster_members 1)" && continue
    say "joining $(cluster_node "$i") to $(cluster_node 1)"
    {
      cluster_ctl "$i" stop_app &&
        cluster_ctl "$i" join_cluster "$(cluster_node 1)" &&
        cluster_ctl "$i" start_app
    } >>"$LOCAL/logs/rabbitmq-rq$i.log" 2>&1 || fail "$(cluster_node "$i") could not join the cluster" "$LOCAL/logs/rabbitmq-rq$i.log"
  done
  wait_for "RabbitMQ cluster" 120 "$LOCAL/logs/rabbitmq-rq1.log" cluster_joined
  for i in $(seq 1 "$RABBITMQ_NODES"); do
    wait_for "RabbitMQ management on node $i" 60 "$LOCAL/logs/rabbitmq-rq$i.log" port_open $((RABBITMQ_MGMT_PORT + i - 1))
  done
  say "RabbitMQ cluster of $RABBITMQ_NODES nodes ready in $((SECONDS - started)) s"
}

cluster_down() {
  local i pid
  for i in $(seq 1 "$RABBITMQ_NODES"); do
    cluster_ctl "$i" -q shutdown >/dev/null 2>&1 || true
    # A node that does not answer (paused, hung) is ended through its pid file, if that pid
    # is still this node's Erlang VM.
    pid=$(cat "$(cluster_base)/rq$i/rabbit.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_MNESIA_BASE=$(cluster_base)/rq$i/mnesia"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  # The cluster's own port mapper; the default one on 4369 is never touched.
  (export ERL_EPMD_PORT=$RABBITMQ_EPMD_PORT && epmd -kill >/dev/null 2>&1) || true
}

cluster_status() {
  local i rc=0 url
  for i in $(seq 1 "$RABBITMQ_NODES"); do
    url="amqp://guest:guest@127.0.0.1:$((AMQP_PORT + i - 1))  (UI http://127.0.0.1:$((RABBITMQ_MGMT_PORT + i - 1)))"
    status_line "$(cluster_node "$i")" "$url" cluster_node_ready "$i" || rc=1
  done
  return $rc
}

cluster_urls() {
  local i urls=()
  for i in $(seq 1 "$RABBITMQ_NODES"); do urls+=("amqp://guest:guest@127.0.0.1:$((AMQP_PORT + i - 1))"); done
  (IFS=,; echo "${urls[*]}")
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
    # FerretDB's default pool (50) stalls for good once that many operations wait on it; each
    # process caps its own client at MONGO_MAX_POOL_SIZE, so this is room for several of them.
    # It names a filter's field in a parameter, so a generic plan cannot use a lookup index:
    # plan every statement with its values (common/ferretdb-indexes.ts).
    nohup "$bin" -listen "127.0.0.1:$MONGO_PORT" -handler postgresql \
      -postgresql-url "postgres://postgres@127.0.0.1:$PG_PORT/ferretdb?pool_max_conns=150&plan_cache_mode=force_custom_plan" >"$log" 2>&1 &
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

# ---------------------------------------------------------------- Toxiproxy (network faults in the fault suite)
toxiproxy_bin() {
  local bin=$ROOT/.local/bin/toxiproxy-server tmp
  if [ -x "$bin" ]; then echo "$bin"; return; fi
  command -v go >/dev/null || fail "Go (to build Toxiproxy) is not on PATH"
  say "building Toxiproxy $TOXIPROXY_VERSION from the Go module proxy (first run only)"
  mkdir -p "$ROOT/.local/bin" "$LOCAL/logs"
  tmp=$(mktemp -d)
  GOBIN=$tmp go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >"$LOCAL/logs/toxiproxy-build.log" 2>&1 ||
    fail "building Toxiproxy failed" "$LOCAL/logs/toxiproxy-build.log"
  mv "$tmp/server" "$bin"
  rmdir "$tmp"
  echo "$bin"
}

# ---------------------------------------------------------------- commands
status_line() { # name url ready-fn [args...]
  local name=$1 url=$2
  shift 2
  if "$@"; then printf '  %-14s up     %s\n' "$name" "$url"; else printf '  %-14s down   %s\n' "$name" "$url"; return 1; fi
}

status() {
  local rc=0
  status_line postgres "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/{system1,system2,endput}" pg_ready || rc=1
  status_line redis "redis://127.0.0.1:$REDIS_PORT" redis_ready || rc=1
  if [ "$RABBITMQ_NODES" -gt 1 ]; then
    cluster_status || rc=1
    printf '  %-14s        AMQP_URL=%s\n' "" "$(cluster_urls)"
  else
    status_line rabbitmq "amqp://guest:guest@127.0.0.1:$AMQP_PORT  (UI http://127.0.0.1:$RABBITMQ_MGMT_PORT, guest/guest)" port_open_amqp || rc=1
  fi
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
  amqp-urls) cluster_urls ;;
  toxiproxy-bin) toxiproxy_bin ;;
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
    echo "usage: $0 up|down|status|amqp-urls|toxiproxy-bin|start SERVICE|stop SERVICE|restart SERVICE|kill rabbitmq" >&2
    exit 2
    ;;
esac
