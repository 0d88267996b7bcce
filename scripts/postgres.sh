#!/usr/bin/env bash
# Throwaway PostgreSQL server on loopback (Debian's postgresql package), for tests, benchmarks
# and the local twin: the index of the fleet storage mode (MINDPROJECT_INDEX).
#
#   scripts/postgres.sh start DIR [PORT]    initdb + start; prints MINDPROJECT_INDEX=… (also DIR/env)
#   scripts/postgres.sh stop DIR [--purge]  stop (fast, then immediate); --purge also deletes data
#   scripts/postgres.sh resume DIR          start again a server stopped without --purge (same
#                                           data, same port): the tests' "PostgreSQL down" fault
#   scripts/postgres.sh status DIR          exit 0 if running and answering
#
# 127.0.0.1 only, trust authentication for loopback (no password), fsync on (the default: an
# acknowledged upload is committed durably). Database `mindproject`, user `postgres`. PORT
# defaults to a free one. Environment: PG_START_TIMEOUT (seconds, default 30), PG_EXTRA_CONF
# (extra postgresql.conf lines). Only stdout output: the env lines of a successful start.
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` user, and its data
# directory lives under /tmp (pytest's and other private folders are 0700, which that user
# cannot enter); DIR/pgdata records where, and `stop --purge` removes it.
set -euo pipefail

readonly DATABASE=mindproject
readonly PG_USER=postgres
readonly START_TIMEOUT="${PG_START_TIMEOUT:-30}"

die() {
  echo "postgres: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR [--purge] | resume DIR | status DIR" >&2
  exit 2
}

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/$1" ] && { echo "$dir/$1"; return 0; }
  done
  command -v "$1" || die "$1 not found (install Debian's postgresql package)"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Run a command as the server's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pgdata() {
  if [ -f "$DIR/pgdata" ]; then
    cat "$DIR/pgdata"
  else
    echo "$DIR/data"
  fi
}

cmd_start() {
  local port="${1:-}" data log sockets pg_ctl initdb deadline
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  pg_ctl="$(pg_bin pg_ctl)"
  initdb="$(pg_bin initdb)"
  if [ -f "$DIR/pgdata" ] || [ -d "$DIR/data" ]; then
    data="$(pgdata)"
    if [ -f "$data/db/postmaster.pid" ] && as_owner "$pg_ctl" status -D "$data/db" >/dev/null 2>&1; then
      die "already running in $DIR (stop it first: $0 stop $DIR)"
    fi
    rm -rf "$data"
  fi
  rm -f "$DIR/env" "$DIR/pgdata"
  if [ -z "$port" ]; then
    port="$(free_port)"
  fi
  if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "bad port '$port'"
  fi
  port_in_use "$port" && die "port 127.0.0.1:$port is already in use"

  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user to run the server as (install postgresql)"
    data="$(mktemp -d /tmp/mindproject-pg.XXXXXX)"
    echo "$data" >"$DIR/pgdata"
  else
    data="$DIR/data"
    mkdir -p "$data"
  fi
  sockets="$data/run"
  log="$data/postgres.log"
  chmod 0700 "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
  mkdir -p "$DIR/log"
  as_owner "$initdb" -D "$data/db" -U "$PG_USER" --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$DIR/log/initdb.log" 2>&1 || { cat "$DIR/log/initdb.log" >&2; die "initdb failed"; }
  as_owner mkdir -p "$sockets"
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$sockets'"
    echo "fsync = on"
    echo "max_connections = 200"
    echo "shared_buffers = 64MB"
    echo "log_min_messages = warning"
    echo "${PG_EXTRA_CONF:-}"
  } | as_owner tee -a "$data/db/postgresql.conf" >/dev/null
  as_owner "$pg_ctl" start -D "$data/db" -l "$log" -w -t "$START_TIMEOUT" >/dev/null \
    || { tail -n 20 "$log" >&2 || true; die "the server did not start (log: $log)"; }
  deadline=$((SECONDS + START_TIMEOUT))
  until "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p "$port" -U "$PG_USER"; do
    [ "$SECONDS" -lt "$deadline" ] || die "the server does not answer on port $port"
    sleep 0.1
  done
  "$(pg_bin createdb)" -h 127.0.0.1 -p "$port" -U "$PG_USER" "$DATABASE" \
    || die "createdb $DATABASE failed"
  ln -sfn "$log" "$DIR/log/postgres.log"
  echo "MINDPROJECT_INDEX=postgresql://$PG_USER@127.0.0.1:$port/$DATABASE" >"$DIR/env"
  cat "$DIR/env"
}

cmd_stop() {
  local purge="${1:-}" data pg_ctl
  [ -z "$purge" ] || [ "$purge" = --purge ] || usage
  [ -d "$DIR" ] || return 0
  DIR="$(cd "$DIR" && pwd)"
  data="$(pgdata)"
  pg_ctl="$(pg_bin pg_ctl)"
  if [ -f "$data/db/postmaster.pid" ]; then
    as_owner "$pg_ctl" stop -D "$data/db" -m fast -w -t 10 >/dev/null 2>&1 \
      || as_owner "$pg_ctl" stop -D "$data/db" -m immediate -w -t 10 >/dev/null 2>&1 || true
  fi
  if [ "$purge" = --purge ]; then
    rm -rf "$data" "$DIR/pgdata" "$DIR/env" "$DIR/log"
    rmdir "$DIR" 2>/dev/null || true
  fi
}

env_port() {
  sed -n 's|^MINDPROJECT_INDEX=postgresql://[^@]*@127.0.0.1:\([0-9]*\)/.*$|\1|p' "$DIR/env"
}

cmd_resume() {
  local data pg_ctl port deadline
  [ -f "$DIR/env" ] || die "no server in $DIR (start one first: $0 start $DIR)"
  DIR="$(cd "$DIR" && pwd)"
  data="$(pgdata)"
  pg_ctl="$(pg_bin pg_ctl)"
  port="$(env_port)"
  [ -d "$data/db" ] || die "no data in $data/db (purged?)"
  if as_owner "$pg_ctl" status -D "$data/db" >/dev/null 2>&1; then
    return 0
  fi
  # The port is in postgresql.conf: the server comes back where its clients look for it.
  as_owner "$pg_ctl" start -D "$data/db" -l "$data/postgres.log" -w -t "$START_TIMEOUT" >/dev/null \
    || { tail -n 20 "$data/postgres.log" >&2 || true; die "the server did not start again"; }
  deadline=$((SECONDS + START_TIMEOUT))
  until "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p "$port" -U "$PG_USER"; do
    [ "$SECONDS" -lt "$deadline" ] || die "the server does not answer on port $port"
    sleep 0.1
  done
}

cmd_status() {
  local port
  [ -f "$DIR/env" ] || exit 1
  port="$(env_port)"
  [ -n "$port" ] && "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p "$port" -U "$PG_USER"
}

[ $# -ge 2 ] || usage
COMMAND="$1"
DIR="$2"
shift 2
case "$COMMAND" in
  start)
    [ $# -le 1 ] || usage
    cmd_start "$@"
    ;;
  stop)
    [ $# -le 1 ] || usage
    cmd_stop "$@"
    ;;
  resume)
    [ $# -eq 0 ] || usage
    cmd_resume
    ;;
  status)
    [ $# -eq 0 ] || usage
    cmd_status
    ;;
  *) usage ;;
esac
