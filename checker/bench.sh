#!/usr/bin/env bash
# Capacity benchmarks (not part of the tests): slot acquire/release throughput of the in-memory,
# Redis Lua and Redis WATCH/MULTI ledgers under the same contention, then the wall time to check
# 10,000 streams with the probe stub at a global limit of 100 (in memory, Redis with one
# process, Redis with three processes). Needs redis-server (checker/test.sh installs it).
#
#   checker/bench.sh [clients=50] [seconds=5] [streams=10000] [stub_delay=0]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
clients="${1:-50}"
seconds="${2:-5}"
streams="${3:-10000}"
stub_delay="${4:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release --quiet --manifest-path "$root/capacity-redis/Cargo.toml" --example ledger_bench
cargo build --release --quiet --manifest-path "$here/Cargo.toml"

work="$(mktemp -d)"
redis_pid=""
cleanup() {
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 200); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
url="redis://127.0.0.1:$port/"

echo "== slot acquire/release throughput ($(nproc) cores)"
timeout 600 "$CARGO_TARGET_DIR/release/examples/ledger_bench" "$url" "$clients" "$seconds"

echo
echo "== $streams streams, probe stub (delay ${stub_delay}s), global limit 100"
{
    echo "#EXTM3U"
    for i in $(seq 0 $((streams - 1))); do
        echo "#EXTINF:-1,Channel $i"
        echo "http://acct$((i % 10)).example/live/$i"
    done
} >"$work/list.m3u"
"$here/scripts/bench-accounts.sh" >"$work/accounts.json"

bin="$CARGO_TARGET_DIR/release/streamguard"
stub="$here/scripts/ffprobe-stub.sh"
timed() {
    local label="$1"; shift
    local start end
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    printf '%-34s %8.2f s\n' "$label" "$(echo "$end - $start" | bc)"
}
run_one() {
    STUB_DELAY="$stub_delay" timeout 900 "$bin" check --playlist "$work/list.m3u" --accounts "$work/accounts.json" \
        --report "$work/$1" --concurrency 100 --probe-cmd "$stub" --no-progress "${@:2}" 2>/dev/null || true
}
run_three() {
    local pids=()
    for n in 1 2 3; do
        run_one "redis3-$n" --redis "$url" --run-id "bench3-$$" &
        pids+=($!)
    done
    wait "${pids[@]}"
}
timed "in memory, 1 process" run_one mem
timed "redis, 1 process" run_one redis1 --redis "$url" --run-id "bench1-$$"
timed "redis, 3 processes" run_three
python3 - "$work" <<'EOF'
import json, sys, os
w = sys.argv[1]
def load(n):
    return json.load(open(os.path.join(w, n + ".json")))["summary"]
m = load("mem")
print(f"in memory: {m['checked']} checked, counts {m['counts']}")
r = load("redis1")
print(f"redis 1 process: {r['checked']} checked")
parts = [load(f"redis3-{n}")["checked"] for n in (1, 2, 3)]
print(f"redis 3 processes: {sum(parts)} checked, split {parts}")
EOF
