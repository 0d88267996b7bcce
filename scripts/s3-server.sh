#!/usr/bin/env bash
# Throwaway single-node Ceph cluster (ceph-mon + ceph-osd on memstore + radosgw) serving S3 on
# loopback, for tests and benchmarks. No systemd, no keyrings (auth none), everything under DIR.
#
#   scripts/s3-server.sh start DIR [PORT]   start; prints AWS_* lines (also written to DIR/env)
#   scripts/s3-server.sh stop DIR [--purge] stop (TERM, ~2 s, KILL); --purge also deletes state
#   scripts/s3-server.sh status DIR         exit 0 if running and answering
#
# Environment: S3_ACCESS_KEY, S3_SECRET_KEY (the S3 user's keys), S3_MEMSTORE_BYTES (OSD RAM
# capacity, default 6 GiB), S3_START_TIMEOUT (seconds per start attempt, default 40),
# S3_CEPH_DEBUG=1 (verbose daemon logs). Needs: ceph-mon ceph-osd radosgw curl python3.
# Only stdout output: the env lines of a successful start. Logs: DIR/log/.
set -euo pipefail

readonly DEFAULT_PORT=7480
readonly ACCESS_KEY="${S3_ACCESS_KEY:-mindproject-test}"
readonly SECRET_KEY="${S3_SECRET_KEY:-mindproject-test-secret-key-0123456789}"
readonly MEMSTORE_BYTES="${S3_MEMSTORE_BYTES:-6442450944}"
readonly START_TIMEOUT="${S3_START_TIMEOUT:-40}"
readonly REGION=us-east-1
readonly S3_UID=mindproject-test
readonly DAEMONS=(radosgw ceph-osd ceph-mon)
readonly EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

die() {
  echo "s3-server: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR [--purge] | status DIR" >&2
  exit 2
}

log() {
  echo "$(date '+%H:%M:%S.%3N') $*" >>"$DIR/log/s3-server.log"
}

# Run a ceph CLI command with a time limit (mgr-only commands hang forever) and retries (the
# first call after mon start can fail with "EPERM: problem getting command descriptions").
ceph_cli() {
  local attempt out
  for attempt in 1 2 3 4 5; do
    if out="$(timeout 10 ceph -c "$CONF" --connect-timeout 8 "$@" 2>>"$DIR/log/ceph-cli.log")"; then
      printf '%s\n' "$out"
      return 0
    fi
    log "ceph $* failed (attempt $attempt)"
    sleep 0.3
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_in_use() {
  # bash's /dev/tcp: succeeds if something accepts connections on the port.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" 2>/dev/null || true
}

anon_ok() {
  [ "$(http_code "http://127.0.0.1:$1/")" = 200 ]
}

# ListBuckets signed with SigV4 by curl; RGW also wants x-amz-content-sha256 (of the empty body).
auth_ok() {
  local port="$1" key="${2:-$ACCESS_KEY}" secret="${3:-$SECRET_KEY}"
  [ "$(http_code --aws-sigv4 "aws:amz:$REGION:s3" --user "$key:$secret" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "http://127.0.0.1:$port/")" = 200 ]
}

# PID of a daemon of this DIR, if it is alive and really ours (comm and command line match).
live_pid() {
  local name="$1" pidfile="$DIR/run/$1.pid" pid comm
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [ "$comm" = "$name" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || return 1
  echo "$pid"
}

# Start a daemon in the foreground mode (-f), detached into its own session, output to DIR/log.
launch() {
  local name="$1"
  shift
  local pid i
  setsid "$@" -f </dev/null >>"$DIR/log/$name.out" 2>&1 &
  pid=$!
  disown "$pid"
  echo "$pid" >"$DIR/run/$name.pid"
  log "launched $name pid $pid ($*)"
  # Until the background subshell has exec'd the daemon, /proc/PID/comm is still bash or setsid.
  for i in $(seq 100); do
    live_pid "$name" >/dev/null && return 0
    running "$pid" || break
    [ "$i" -lt 100 ] && sleep 0.02
  done
  log "$name did not come up (pid $pid)"
  return 1
}

# True while PID exists and is not a zombie (an exited daemon whose parent has not reaped it yet).
running() {
  [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop_daemons() {
  local name pid pids=() waited
  for name in "${DAEMONS[@]}"; do
    if pid="$(live_pid "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for waited in $(seq 20); do
    local alive=()
    for pid in ${pids[@]+"${pids[@]}"}; do
      running "$pid" && alive+=("$pid")
    done
    pids=(${alive[@]+"${alive[@]}"})
    [ "${#pids[@]}" -eq 0 ] && break
    [ "$waited" -lt 20 ] && sleep 0.1
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    while running "$pid"; do
      sleep 0.05
    done
  done
  for name in "${DAEMONS[@]}"; do
    rm -f "$DIR/run/$name.pid"
  done
}

write_conf() {
  local fsid="$1" mon_port="$2" port="$3" debug osd_ports=""
  if [ "${S3_CEPH_DEBUG:-0}" = 1 ]; then
    debug=$'debug_mon = 10\ndebug_osd = 10\ndebug_rgw = 20\ndebug_ms = 1'
  else
    debug=$'debug_mon = 1/5\ndebug_osd = 1/5\ndebug_rgw = 0/5\ndebug_ms = 0/0'
  fi
  # OSD messenger ports come from ms_bind_port_min..max (6800-7300); keep the S3 port out of it.
  if [ "$port" -ge 6800 ] && [ "$port" -le 7300 ]; then
    osd_ports=$'ms_bind_port_min = 7301\nms_bind_port_max = 7800'
  fi
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon_host = v1:127.0.0.1:$mon_port
ms_bind_msgr2 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
pid_file =
mon_cluster_log_file = $DIR/log/cluster.log
log_to_stderr = false
err_to_stderr = true
$debug
$osd_ports

[mon]
mon_data = $DIR/data/\$name
paxos_propose_interval = 0.01
paxos_min_wait = 0.01
mon_allow_pool_delete = true
mon_data_avail_crit = 0
mon_data_avail_warn = 0
mon_warn_on_pool_no_redundancy = false

[osd]
osd_data = $DIR/data/\$name
osd_objectstore = memstore
memstore_device_bytes = $MEMSTORE_BYTES
osd_crush_update_on_start = false
osd_class_update_on_start = false

[client]
admin_socket =

[client.rgw.$S3_UID]
rgw_frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw_data = $DIR/data/\$name
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
EOF
}

# One start attempt. Returns non-zero on failure (the caller stops the daemons and may retry).
start_once() {
  local port="$1" fsid mon_port osd_uuid osd_id deadline
  rm -rf "$DIR/data" "$DIR/run" "$CONF" "$DIR/env"
  mkdir -p "$DIR/data/mon.a" "$DIR/data/osd.0" "$DIR/data/client.rgw.$S3_UID" "$DIR/run"
  fsid="$(uuidgen)"
  osd_uuid="$(uuidgen)"
  mon_port="$(free_port)"
  write_conf "$fsid" "$mon_port" "$port"
  log "attempt: fsid $fsid mon port $mon_port s3 port $port"

  timeout 10 monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" \
    "$DIR/run/monmap" >>"$DIR/log/mkfs.log" 2>&1 || { log "monmaptool failed"; return 1; }
  timeout 20 ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/run/monmap" \
    >>"$DIR/log/mkfs.log" 2>&1 || { log "ceph-mon --mkfs failed"; return 1; }
  launch ceph-mon ceph-mon -c "$CONF" -i a || return 1

  osd_id="$(ceph_cli osd new "$osd_uuid" 0)" || { log "ceph osd new failed"; return 1; }
  [ "$osd_id" = 0 ] || { log "unexpected osd id '$osd_id'"; return 1; }
  ceph_cli osd crush add osd.0 1.0 root=default >/dev/null || { log "crush add failed"; return 1; }
  timeout 30 ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" \
    >>"$DIR/log/mkfs.log" 2>&1 || { log "ceph-osd --mkfs failed"; return 1; }
  launch ceph-osd ceph-osd -c "$CONF" -i 0 || return 1
  launch radosgw radosgw -c "$CONF" -n "client.rgw.$S3_UID" || return 1

  deadline=$((SECONDS + START_TIMEOUT))
  until anon_ok "$port"; do
    live_pid radosgw >/dev/null || { log "radosgw exited"; return 1; }
    live_pid ceph-osd >/dev/null || { log "ceph-osd exited"; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { log "timeout waiting for anonymous GET /"; return 1; }
    sleep 0.1
  done
  log "anonymous GET / answers 200"

  timeout 30 radosgw-admin -c "$CONF" user create --uid="$S3_UID" --display-name="$S3_UID" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
    >>"$DIR/log/radosgw-admin.log" 2>&1 || { log "radosgw-admin user create failed"; return 1; }
  until auth_ok "$port"; do
    live_pid radosgw >/dev/null || { log "radosgw exited"; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { log "timeout waiting for authenticated GET /"; return 1; }
    sleep 0.1
  done
  log "authenticated GET / answers 200"
}

cmd_start() {
  local port="${1:-$DEFAULT_PORT}" attempt t0 name
  if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "bad port '$port'"
  fi
  for name in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl python3 uuidgen setsid; do
    command -v "$name" >/dev/null || die "$name not found (install: radosgw ceph-mon ceph-osd curl)"
  done
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  CONF="$DIR/ceph.conf"
  for name in "${DAEMONS[@]}"; do
    if live_pid "$name" >/dev/null; then
      die "already running in $DIR (stop it first: $0 stop $DIR)"
    fi
  done
  if port_in_use "$port"; then
    die "port 127.0.0.1:$port is already in use"
  fi
  t0="$(date +%s.%N)"
  for attempt in 1 2 3; do
    if [ -d "$DIR/log" ]; then
      rm -rf "$DIR/log.prev"
      mv "$DIR/log" "$DIR/log.prev"
    fi
    mkdir -p "$DIR/log"
    if start_once "$port"; then
      {
        echo "AWS_ENDPOINT_URL=http://127.0.0.1:$port"
        echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
        echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
        echo "AWS_REGION=$REGION"
      } >"$DIR/env"
      log "started in $(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))") s"
      cat "$DIR/env"
      return 0
    fi
    stop_daemons
    echo "s3-server: start attempt $attempt failed (see $DIR/log)" >&2
  done
  {
    echo "s3-server: could not start Ceph in $DIR after 3 attempts; last attempt's logs:"
    for name in s3-server.log ceph-cli.log mkfs.log radosgw-admin.log client.rgw.$S3_UID.log \
      osd.0.log mon.a.log ceph-mon.out ceph-osd.out radosgw.out; do
      if [ -s "$DIR/log/$name" ]; then
        echo "--- $DIR/log/$name (tail)"
        tail -n 15 "$DIR/log/$name"
      fi
    done
  } >&2
  exit 1
}

cmd_stop() {
  local purge="${1:-}"
  [ -z "$purge" ] || [ "$purge" = --purge ] || usage
  [ -d "$DIR" ] || return 0
  DIR="$(cd "$DIR" && pwd)"
  CONF="$DIR/ceph.conf"
  [ -d "$DIR/run" ] && stop_daemons
  if [ "$purge" = --purge ]; then
    rm -rf "$DIR/data" "$DIR/run" "$DIR/log" "$DIR/log.prev" "$CONF" "$DIR/env"
    rmdir "$DIR" 2>/dev/null || true
  fi
}

cmd_status() {
  local name port key secret
  [ -d "$DIR" ] || exit 1
  DIR="$(cd "$DIR" && pwd)"
  CONF="$DIR/ceph.conf"
  for name in "${DAEMONS[@]}"; do
    live_pid "$name" >/dev/null || exit 1
  done
  [ -f "$DIR/env" ] || exit 1
  port="$(sed -n 's|^AWS_ENDPOINT_URL=http://127.0.0.1:\([0-9]*\)$|\1|p' "$DIR/env")"
  key="$(sed -n 's|^AWS_ACCESS_KEY_ID=||p' "$DIR/env")"
  secret="$(sed -n 's|^AWS_SECRET_ACCESS_KEY=||p' "$DIR/env")"
  [ -n "$port" ] && anon_ok "$port" && auth_ok "$port" "$key" "$secret"
}

[ $# -ge 2 ] || usage
COMMAND="$1"
DIR="$2"
CONF=""
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
  status)
    [ $# -eq 0 ] || usage
    cmd_status
    ;;
  *) usage ;;
esac
