#!/usr/bin/env bash
# A local twin of the AWS deployment, all on loopback: the S3 server (Ceph RGW, via
# scripts/s3-server.sh), N MindProject replicas, and HAProxy in front doing what the ALB does
# (round-robin, health checks on /healthz, a replica that fails them is taken out).
#
#   scripts/cluster.sh run [DIR]               start, print the URLs, stay in the foreground;
#                                              Ctrl-C / SIGTERM stops everything it started
#   scripts/cluster.sh start DIR               start in the background; writes DIR/env
#   scripts/cluster.sh stop DIR                stop everything started in DIR
#   scripts/cluster.sh status DIR              exit 0 if the balancer and every replica answer
#   scripts/cluster.sh replica-stop DIR N [SIG]   send SIG (default TERM; KILL to crash) to replica N
#   scripts/cluster.sh replica-start DIR N     (re)start replica N on its port
#   scripts/cluster.sh s3-down DIR             close the S3 endpoint the replicas use
#   scripts/cluster.sh s3-up DIR               open it again
#   scripts/cluster.sh pg-down DIR             stop the index's PostgreSQL (CLUSTER_INDEX=pg)
#   scripts/cluster.sh pg-up DIR               start it again, same data and port
#
# The replicas reach S3 through a TCP relay (a second HAProxy) in front of the gateway, so
# s3-down/s3-up take S3 away and bring it back as the replicas see it (connections refused)
# while the gateway keeps its data: a real stop of this memstore Ceph would lose every object.
# pg-down/pg-up stop and start the real PostgreSQL server (scripts/postgres.sh stop/resume): its
# data is on disk, so it comes back with every committed row.
#
# Environment:
#   CLUSTER_REPLICAS (2), CLUSTER_PORT (balancer port; `run` 8080, `start` a free port),
#   CLUSTER_STORAGE (s3 | file; default s3), CLUSTER_HEALTH_PATH (/healthz),
#   CLUSTER_INDEX (none | pg; default none): pg starts PostgreSQL (scripts/postgres.sh) and
#     gives the replicas MINDPROJECT_INDEX, the fleet mode (needs CLUSTER_STORAGE=s3),
#   CLUSTER_CHECK_INTER_MS (500; health-check interval, the ALB's is 5-30 s),
#   CLUSTER_SERVE_CMD (replica command; {port} and {storage} are replaced; default
#     ".venv/bin/mindproject serve --host 127.0.0.1 --port {port} --storage {storage}"),
#   MINDPROJECT_* are passed to the replicas; MINDPROJECT_SECRET_KEY is generated if unset.
# Needs: haproxy, curl, python3 (free ports), for s3 the packages of scripts/s3-server.sh, for
# pg Debian's postgresql.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly BUCKET=telemetry
readonly EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

die() {
  echo "cluster: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

say() {
  echo "cluster: $*" >&2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start time of a process (field 22 of /proc/PID/stat): a PID plus this names one process even
# if the PID is reused later.
starttime() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  # shellcheck disable=SC2086 # word splitting of the stat fields is the point
  set -- $stat
  echo "${20}"
}

running() {
  [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# PID recorded in DIR/run/NAME.pid if that very process is still alive.
live_pid() {
  local file="$DIR/run/$1.pid" pid start
  [ -f "$file" ] || return 1
  read -r pid start <"$file" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  running "$pid" || return 1
  [ "$(starttime "$pid")" = "$start" ] || return 1
  echo "$pid"
}

# launch NAME CMD...: detached into its own session, output to DIR/log/NAME.log.
launch() {
  local name="$1" pid
  shift
  setsid "$@" </dev/null >>"$DIR/log/$name.log" 2>&1 &
  pid=$!
  disown "$pid"
  echo "$pid $(starttime "$pid")" >"$DIR/run/$name.pid"
}

# stop_one NAME [GRACE_SECONDS]: TERM to its process group, then KILL after the grace period.
stop_one() {
  local name="$1" grace="${2:-10}" pid i
  pid="$(live_pid "$name")" || {
    rm -f "$DIR/run/$name.pid"
    return 0
  }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq $((grace * 10))); do
    running "$pid" || break
    [ "$i" -gt 0 ] && sleep 0.1
  done
  if running "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/run/$name.pid"
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" 2>/dev/null || true
}

# wait_for SECONDS CMD...: retry CMD every 0.1 s until it succeeds or time is up.
wait_for() {
  local limit=$(($1 * 10)) i
  shift
  for i in $(seq "$limit"); do
    "$@" && return 0
    [ "$i" -lt "$limit" ] && sleep 0.1
  done
  return 1
}

answers() {
  [ "$(http_code "$1")" = 200 ]
}

# replica_answers N URL: true once it answers 200; fails the wait at once if the replica died.
replica_answers() {
  live_pid "replica-$1" >/dev/null || die "replica $1 exited (see $DIR/log/replica-$1.log)"
  answers "$2"
}

load_env() {
  [ -f "$DIR/env" ] || die "no cluster in $DIR (missing $DIR/env)"
  set -a
  # shellcheck disable=SC1091 # written by this script at start
  . "$DIR/env"
  set +a
}

replica_cmd() {
  local port="$1" cmd default
  default="$ROOT/.venv/bin/mindproject serve --host 127.0.0.1 --port {port} --storage {storage}"
  cmd="${CLUSTER_SERVE_CMD:-$default}"
  local port_ph='{port}' storage_ph='{storage}'
  cmd="${cmd//"$port_ph"/$port}"
  cmd="${cmd//"$storage_ph"/$CLUSTER_STORAGE_URL}"
  echo "$cmd"
}

start_replica() {
  local n="$1" port_var port cmd
  port_var="REPLICA_${n}_PORT"
  port="${!port_var:?no replica $n in $DIR/env}"
  stop_one "replica-$n" 2
  cmd="$(replica_cmd "$port")"
  # shellcheck disable=SC2086 # the command is a plain word list by contract
  launch "replica-$n" env MINDPROJECT_STORAGE="$CLUSTER_STORAGE_URL" $cmd
  wait_for 30 replica_answers "$n" "http://127.0.0.1:$port$CLUSTER_HEALTH_PATH" ||
    die "replica $n did not answer $CLUSTER_HEALTH_PATH on port $port (see $DIR/log/replica-$n.log)"
}

write_haproxy_cfg() {
  local n inter="${CLUSTER_CHECK_INTER_MS:-500}"
  {
    cat <<EOF
# Generated by scripts/cluster.sh: the ALB's part in the local twin.
global
    maxconn 8192
    stats socket $DIR/run/haproxy.sock mode 600 level admin
    pidfile $DIR/run/haproxy.master.pid

defaults
    mode http
    timeout connect 2s
    # the ALB's default idle timeout
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    # a refused connection is tried once more, on another replica
    retries 1
    option redispatch

frontend lb
    bind 127.0.0.1:$CLUSTER_PORT
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET $CLUSTER_HEALTH_PATH
    http-check expect status 200
    default-server check inter ${inter} fall 2 rise 2
EOF
    for n in $(seq "$CLUSTER_REPLICAS"); do
      local port_var="REPLICA_${n}_PORT"
      echo "    server replica-$n 127.0.0.1:${!port_var}"
    done
    cat <<EOF

listen stats
    bind 127.0.0.1:$CLUSTER_STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
EOF
  } >"$DIR/haproxy.cfg"
}

write_s3_relay_cfg() {
  cat >"$DIR/s3-relay.cfg" <<EOF
# Generated by scripts/cluster.sh: TCP relay between the replicas and the S3 gateway, so that
# the tests can take S3 away (s3-down) and bring it back (s3-up) without losing its data.
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s

listen s3
    bind 127.0.0.1:$S3_RELAY_PORT
    server rgw 127.0.0.1:$S3_GATEWAY_PORT
EOF
}

s3_up() {
  live_pid s3-relay >/dev/null && return 0
  launch s3-relay haproxy -db -f "$DIR/s3-relay.cfg"
  wait_for 10 answers "http://127.0.0.1:$S3_RELAY_PORT/" || die "S3 relay did not come up"
}

s3_down() {
  local pid
  pid="$(live_pid s3-relay)" || return 0
  # KILL: the relay's open connections are cut at once, as when the S3 server goes away.
  kill -KILL "$pid" 2>/dev/null || true
  wait_for 10 bash -c "! kill -0 $pid 2>/dev/null" || true
  rm -f "$DIR/run/s3-relay.pid"
}

start_s3() {
  local out
  S3_GATEWAY_PORT="$(free_port)"
  out="$(bash "$ROOT/scripts/s3-server.sh" start "$DIR/s3" "$S3_GATEWAY_PORT")" ||
    die "the S3 server did not start (see $DIR/s3/log)"
  eval "$(printf '%s\n' "$out" | grep -E '^AWS_[A-Z_]+=' | sed 's/^/export /')"
  S3_RELAY_PORT="$(free_port)"
  write_s3_relay_cfg
  s3_up
  # Create the bucket (SigV4 signed by curl; RGW wants x-amz-content-sha256).
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT \
    --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "http://127.0.0.1:$S3_GATEWAY_PORT/$BUCKET")"
  [ "$code" = 200 ] || die "could not create bucket $BUCKET (HTTP $code)"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_RELAY_PORT"
  CLUSTER_STORAGE_URL="s3://$BUCKET/uploads"
}

cmd_start() {
  command -v haproxy >/dev/null || die "haproxy is not installed (apt-get install haproxy)"
  [ -f "$DIR/env" ] && live_pid haproxy >/dev/null && die "a cluster is already running in $DIR"
  rm -rf "$DIR/run" "$DIR/log" "$DIR/env"
  mkdir -p "$DIR/run" "$DIR/log"
  CLUSTER_REPLICAS="${CLUSTER_REPLICAS:-2}"
  CLUSTER_PORT="${CLUSTER_PORT:-$(free_port)}"
  CLUSTER_STATS_PORT="$(free_port)"
  CLUSTER_HEALTH_PATH="${CLUSTER_HEALTH_PATH:-/healthz}"
  export MINDPROJECT_SECRET_KEY="${MINDPROJECT_SECRET_KEY:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(40))')}"
  local storage="${CLUSTER_STORAGE:-s3}" n
  trap 'say "start failed; stopping what was started"; cmd_stop' EXIT
  case "$storage" in
  s3) start_s3 ;;
  file)
    mkdir -p "$DIR/data"
    CLUSTER_STORAGE_URL="file://$DIR/data"
    ;;
  *) die "CLUSTER_STORAGE must be s3 or file" ;;
  esac
  local index="${CLUSTER_INDEX:-none}" index_url=""
  case "$index" in
  none) ;;
  pg)
    [ "$storage" = s3 ] || die "CLUSTER_INDEX=pg needs CLUSTER_STORAGE=s3"
    index_url="$(bash "$ROOT/scripts/postgres.sh" start "$DIR/pg" | sed -n 's/^MINDPROJECT_INDEX=//p')" ||
      die "PostgreSQL did not start (see $DIR/pg/log)"
    [ -n "$index_url" ] || die "PostgreSQL did not start (see $DIR/pg/log)"
    ;;
  *) die "CLUSTER_INDEX must be none or pg" ;;
  esac
  {
    echo "CLUSTER_DIR=$DIR"
    echo "CLUSTER_URL=http://127.0.0.1:$CLUSTER_PORT"
    echo "CLUSTER_PORT=$CLUSTER_PORT"
    echo "CLUSTER_STATS_URL=http://127.0.0.1:$CLUSTER_STATS_PORT/"
    echo "CLUSTER_STATS_PORT=$CLUSTER_STATS_PORT"
    echo "CLUSTER_HAPROXY_SOCKET=$DIR/run/haproxy.sock"
    echo "CLUSTER_HEALTH_PATH=$CLUSTER_HEALTH_PATH"
    echo "CLUSTER_REPLICAS=$CLUSTER_REPLICAS"
    echo "CLUSTER_STORAGE_URL=$CLUSTER_STORAGE_URL"
    echo "MINDPROJECT_SECRET_KEY=$MINDPROJECT_SECRET_KEY"
    [ -z "$index_url" ] || echo "MINDPROJECT_INDEX=$index_url"
    if [ "$storage" = s3 ]; then
      echo "S3_GATEWAY_PORT=$S3_GATEWAY_PORT"
      echo "S3_RELAY_PORT=$S3_RELAY_PORT"
      echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
      echo "AWS_GATEWAY_URL=http://127.0.0.1:$S3_GATEWAY_PORT"
      echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
      echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
      echo "AWS_REGION=${AWS_REGION:-us-east-1}"
    fi
    for n in $(seq "$CLUSTER_REPLICAS"); do
      local port
      port="$(free_port)"
      echo "REPLICA_${n}_PORT=$port"
      echo "REPLICA_${n}_URL=http://127.0.0.1:$port"
    done
  } >"$DIR/env"
  load_env
  for n in $(seq "$CLUSTER_REPLICAS"); do
    start_replica "$n"
  done
  write_haproxy_cfg
  haproxy -c -q -f "$DIR/haproxy.cfg" || die "bad generated haproxy config $DIR/haproxy.cfg"
  launch haproxy haproxy -db -f "$DIR/haproxy.cfg"
  wait_for 20 answers "$CLUSTER_URL$CLUSTER_HEALTH_PATH" || die "the balancer does not answer"
  trap - EXIT
  cat "$DIR/env"
}

cmd_stop() {
  local name n
  [ -d "$DIR/run" ] || return 0
  stop_one haproxy 5
  for name in "$DIR"/run/replica-*.pid; do
    [ -e "$name" ] || continue
    n="$(basename "$name" .pid)"
    stop_one "$n" "${CLUSTER_STOP_GRACE:-35}"
  done
  stop_one s3-relay 2
  if [ -d "$DIR/s3" ]; then
    bash "$ROOT/scripts/s3-server.sh" stop "$DIR/s3" --purge || say "s3-server stop failed"
  fi
  if [ -d "$DIR/pg" ]; then
    bash "$ROOT/scripts/postgres.sh" stop "$DIR/pg" --purge || say "postgres stop failed"
  fi
}

cmd_status() {
  local n url
  load_env
  answers "$CLUSTER_URL$CLUSTER_HEALTH_PATH" || {
    say "balancer $CLUSTER_URL does not answer"
    return 1
  }
  for n in $(seq "$CLUSTER_REPLICAS"); do
    url="REPLICA_${n}_URL"
    answers "${!url}$CLUSTER_HEALTH_PATH" || {
      say "replica $n (${!url}) does not answer"
      return 1
    }
  done
}

cmd_run() {
  local stopping=0
  CLUSTER_PORT="${CLUSTER_PORT:-8080}"
  cmd_start >/dev/null
  # shellcheck disable=SC2317 # reached through the trap
  on_signal() {
    [ "$stopping" = 1 ] && return
    stopping=1
    say "stopping"
    cmd_stop
    say "stopped"
    exit 0
  }
  trap on_signal INT TERM
  say "balancer:  $CLUSTER_URL  (stats: $CLUSTER_STATS_URL)"
  for n in $(seq "$CLUSTER_REPLICAS"); do
    url="REPLICA_${n}_URL"
    say "replica $n: ${!url}"
  done
  say "storage:   $CLUSTER_STORAGE_URL${MINDPROJECT_INDEX:+, index $MINDPROJECT_INDEX}; settings in $DIR/env; logs in $DIR/log"
  say "token:     MINDPROJECT_SECRET_KEY=\$(grep -oP '(?<=^MINDPROJECT_SECRET_KEY=).*' $DIR/env) .venv/bin/mindproject token create --role admin"
  say "Ctrl-C stops everything"
  while true; do
    sleep 1 &
    wait $! || true
    if ! live_pid haproxy >/dev/null; then
      say "haproxy exited; stopping"
      on_signal
    fi
  done
}

[ $# -ge 1 ] || usage
action="$1"
shift
case "$action" in
run)
  DIR="$(realpath -m "${1:-$ROOT/.cache/cluster}")"
  mkdir -p "$DIR"
  cmd_run
  ;;
start | stop | status | replica-stop | replica-start | s3-down | s3-up | pg-down | pg-up)
  [ $# -ge 1 ] || usage
  mkdir -p "$1"
  DIR="$(realpath "$1")"
  shift
  case "$action" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  replica-stop)
    [ $# -ge 1 ] || usage
    pid="$(live_pid "replica-$1")" || die "replica $1 is not running"
    kill "-${2:-TERM}" "$pid"
    ;;
  replica-start)
    [ $# -ge 1 ] || usage
    load_env
    start_replica "$1"
    ;;
  s3-down)
    load_env
    s3_down
    ;;
  s3-up)
    load_env
    s3_up
    ;;
  pg-down)
    [ -f "$DIR/pg/env" ] || die "no PostgreSQL in $DIR (start the cluster with CLUSTER_INDEX=pg)"
    bash "$ROOT/scripts/postgres.sh" stop "$DIR/pg"
    ;;
  pg-up)
    [ -f "$DIR/pg/env" ] || die "no PostgreSQL in $DIR (start the cluster with CLUSTER_INDEX=pg)"
    bash "$ROOT/scripts/postgres.sh" resume "$DIR/pg"
    ;;
  esac
  ;;
*) usage ;;
esac
