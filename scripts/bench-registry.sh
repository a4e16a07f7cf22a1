#!/usr/bin/env bash
# Load figures of the registry (README "Several instances and load"); not a test. Builds the
# release binary, installs wrk (Debian) and PostgreSQL if missing, and measures on loopback,
# with load from separate processes (wrk, sse_load):
#   1. reads (provider list with and without If-None-Match, health, placement): req/s and p99
#      for one instance on SQLite, one on PostgreSQL, two behind nginx, next to nginx serving
#      the same JSON as a static file with an ETag (the ceiling on this machine);
#   2. event-stream connections held by one instance, its memory per connection, and the
#      delivery time of an admin change to all of them;
#   3. session keep-alive writes per second against the read p99 measured at the same time.
# Knobs (environment): DUR seconds per run (5), CONNS wrk connections (32), SSE_COUNT
# event-stream connections (10000), DEVICES keep-alive clients (10000), SECTIONS (any of
# "reads sse keepalive"; all by default).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${DUR:-5}"
CONNS="${CONNS:-32}"
SSE_COUNT="${SSE_COUNT:-10000}"
DEVICES="${DEVICES:-10000}"
SECTIONS="${SECTIONS:-reads sse keepalive}"
TARGET="${CARGO_TARGET_DIR:-target}"
ADMIN=bench-admin-token-0123456789
TELEMETRY=bench-telemetry-token-0123456789
export TELEMETRY_TOKEN="$TELEMETRY" DEVICES

need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -n "$made_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi
NGINX=/usr/sbin/nginx; [ -x "$NGINX" ] || NGINX=nginx
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cargo build -q --release -p streamguard-registry --bin streamguard-registry --example sse_load
BIN="$TARGET/release/streamguard-registry"
SSE="$TARGET/release/examples/sse_load"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d /tmp/sg-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PG_DATA=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    kill -INT "$(head -1 "$PG_DATA/postmaster.pid")" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # bounded
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; return 1
}

start_postgres() {
  local dir="$WORK/pg" user=()
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$dir"; user=(runuser -u nobody --); fi
  (cd "$dir" && "${user[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null)
  PG_PORT=$(free_port)
  # Durable settings as a production server would have them (fsync on).
  (cd "$dir" && "${user[@]}" "$PGBIN/postgres" -D "$dir/data" -p "$PG_PORT" -k "$dir" \
     -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB \
     >"$dir/log" 2>&1 &)
  PG_DATA="$dir/data"
  wait_port "$PG_PORT"
  for _ in $(seq 1 100); do # bounded: the port opens before the server accepts sessions
    "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE bench" \
      >/dev/null 2>&1 && break
    sleep 0.1
  done
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/bench"
}

# start_registry NAME DB -> sets URL and PID
start_registry() {
  local name=$1 db=$2
  cat >"$WORK/$name.json" <<EOF
{"adminToken":"$ADMIN","superAdminToken":"$ADMIN-super","telemetryToken":"$TELEMETRY",
 "rateLimit":{"perSecond":0,"burst":1},"maxEventSubscribers":20000,"healthIntervalMs":0,
 "trustForwardedFor":true}
EOF
  RUST_LOG=warn "$BIN" --config "$WORK/$name.json" --addr 127.0.0.1:0 --db "$db" \
    --seed registry/examples/providers.json >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 200); do
    URL=$(sed -n 's/^streamguard-registry listening on //p' "$WORK/$name.out" 2>/dev/null || true)
    [ -n "$URL" ] && break
    sleep 0.05
  done
  [ -n "$URL" ] || { cat "$WORK/$name.err" >&2; exit 1; }
}

# start_nginx NAME CONF_BODY -> sets NGINX_URL
start_nginx() {
  local name=$1 dir="$WORK/$1" port
  port=$(free_port)
  mkdir -p "$dir"
  sed -e "s|@PREFIX@|$dir|g" -e "s|@LISTEN@|127.0.0.1:$port|" \
    "$2" | awk -v ups="$3" '{ if ($0 ~ /@UPSTREAMS@/) print ups; else print }' >"$dir/nginx.conf"
  "$NGINX" -p "$dir" -c nginx.conf -e "$dir/error.log" &
  PIDS+=("$!")
  wait_port "$port"
  NGINX_URL="http://127.0.0.1:$port"
}

# wrk_run URL [extra wrk args] -> prints "req/s p99"
wrk_run() {
  local url=$1; shift
  wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" "$url" | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { p99 = $2 }
    /Non-2xx or 3xx/ { bad = $NF }
    END { printf "%s %s%s\n", rps, p99, (bad ? " (" bad " non-2xx/3xx)" : "") }'
}

ROWS=()
row() { ROWS+=("$1|$2|$3"); }

claim_placement() {
  curl -sf -X PUT "$1/api/streaming/streams/bench/placement" -H "Authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' \
    -d '{"provider":"agora","epoch":1,"standby":["zegocloud"],"clientId":"bench"}' >/dev/null
}

read_suite() { # read_suite LABEL BASE
  local label=$1 base=$2 etag
  etag=$(curl -sfI "$base/api/streaming/providers" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
  row "$label" "list 200" "$(wrk_run "$base/api/streaming/providers")"
  row "$label" "list 304 (If-None-Match)" "$(wrk_run "$base/api/streaming/providers" -H "If-None-Match: $etag")"
  row "$label" "health" "$(wrk_run "$base/api/streaming/providers/agora/health")"
  row "$label" "placement" "$(wrk_run "$base/api/streaming/streams/bench")"
}

start_postgres
start_registry sqlite "sqlite:$WORK/bench.db"; SQLITE_URL=$URL; SQLITE_PID=$PID
start_registry pg1 "$PG_URL"; PG1_URL=$URL; PG1_PID=$PID
start_registry pg2 "$PG_URL"; PG2_URL=$URL
claim_placement "$SQLITE_URL"; claim_placement "$PG1_URL"

if [[ $SECTIONS == *reads* ]]; then
echo "== reads ($DUR s per run, $CONNS connections, wrk -t1; $(nproc) cores shared by everything)"
# The ceiling: nginx serving the same list as a static file (with its own ETag).
mkdir -p "$WORK/static/api/streaming"
curl -sf "$SQLITE_URL/api/streaming/providers" >"$WORK/static/api/streaming/providers"
static_port=$(free_port)
mkdir -p "$WORK/static-nginx"
cat >"$WORK/static-nginx/nginx.conf" <<EOF
daemon off; worker_processes auto; error_log $WORK/static-nginx/error.log warn;
pid $WORK/static-nginx/nginx.pid;
events { worker_connections 4096; }
http { access_log off; default_type application/json;
  client_body_temp_path $WORK/static-nginx/cb; proxy_temp_path $WORK/static-nginx/p;
  fastcgi_temp_path $WORK/static-nginx/f; uwsgi_temp_path $WORK/static-nginx/u; scgi_temp_path $WORK/static-nginx/s;
  server { listen 127.0.0.1:$static_port; root $WORK/static; etag on; } }
EOF
"$NGINX" -p "$WORK/static-nginx" -c nginx.conf -e "$WORK/static-nginx/error.log" &
PIDS+=("$!")
wait_port "$static_port"
STATIC="http://127.0.0.1:$static_port/api/streaming/providers"
static_etag=$(curl -sfI "$STATIC" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
row "nginx static file" "list 200" "$(wrk_run "$STATIC")"
row "nginx static file" "list 304 (If-None-Match)" "$(wrk_run "$STATIC" -H "If-None-Match: $static_etag")"

read_suite "1 instance, SQLite" "$SQLITE_URL"
read_suite "1 instance, PostgreSQL" "$PG1_URL"
ups="server ${PG1_URL#http://} max_fails=1 fail_timeout=5s; server ${PG2_URL#http://} max_fails=1 fail_timeout=5s;"
start_nginx lb registry/deploy/nginx-lb.conf "$ups"; LB_URL=$NGINX_URL
read_suite "2 instances (PostgreSQL) behind nginx" "$LB_URL"

ceiling200=$(printf '%s\n' "${ROWS[@]}" | awk -F'|' '$1=="nginx static file" && $2=="list 200" {split($3,a," "); print a[1]}')
ceiling304=$(printf '%s\n' "${ROWS[@]}" | awk -F'|' '$1=="nginx static file" && $2 ~ /304/ {split($3,a," "); print a[1]}')
echo
echo "| server | route | req/s | p99 | ratio to nginx static |"
echo "|---|---|---:|---:|---:|"
for r in "${ROWS[@]}"; do
  IFS='|' read -r who what figures <<<"$r"
  rps=${figures%% *}; rest=${figures#* }
  base=$ceiling200; [[ $what == *304* ]] && base=$ceiling304
  ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  echo "| $who | $what | $rps | $rest | $ratio |"
done

fi

if [[ $SECTIONS == *sse* ]]; then
echo
echo "== event streams: $SSE_COUNT connections to one instance (SQLite), admin change delivery"
"$SSE" "$SQLITE_URL/api/streaming/providers/events" "$SQLITE_URL/api/streaming/providers/webrtc" \
  "$ADMIN" "$SQLITE_PID" "$SSE_COUNT" 5
echo "-- the same on one PostgreSQL instance, the change made through the other instance"
"$SSE" "$PG1_URL/api/streaming/providers/events" "$PG2_URL/api/streaming/providers/webrtc" \
  "$ADMIN" "$PG1_PID" "$SSE_COUNT" 5
fi

[[ $SECTIONS == *keepalive* ]] || exit 0
echo
echo "== session keep-alives ($DEVICES devices, one stream each) against list reads (wrk -c16) at the same time"
echo "| database | keep-alive connections | keep-alives/s | keep-alive p99 | list req/s | list p99 |"
echo "|---|---:|---:|---:|---:|---:|"
for target in "SQLite $SQLITE_URL" "PostgreSQL $PG1_URL"; do
  name=${target%% *}; base=${target#* }
  for writers in 0 1 4 16 64; do
    if [ "$writers" -gt 0 ]; then
      wrk -t1 -c"$writers" -d"${DUR}s" --latency -s scripts/bench/keepalive.lua "$base" >"$WORK/w.out" &
      wpid=$!
    fi
    reads=$(CONNS=16 wrk_run "$base/api/streaming/providers")
    if [ "$writers" -gt 0 ]; then
      wait "$wpid"
      w=$(awk '/Requests\/sec/ { r = $2 } /^ +99%/ { p = $2 } /Non-2xx/ { b = " (" $NF " failed)" } END { print r " " p b }' "$WORK/w.out")
    else
      w="0 -"
    fi
    echo "| $name | $writers | ${w%% *} | ${w#* } | ${reads%% *} | ${reads#* } |"
  done
done
