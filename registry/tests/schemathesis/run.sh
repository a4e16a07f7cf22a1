#!/usr/bin/env bash
# Runs schemathesis (PyPI, pinned, in a venv under the cargo target dir) against a live registry
# on a free loopback port: every documented operation with the token its security scheme names,
# stateful sequences where links are inferred, and the checks: no server error, status codes,
# content types, headers and bodies as documented, no write accepted without its token.
#
#   registry/tests/schemathesis/run.sh [MAX_SECONDS]     # default 90
#
# `positive_data_acceptance` (a schema-valid request must be accepted) is not checked: the
# schema cannot say everything validation does (a failover needs `toProvider`, reserved provider
# names, lengths in bytes where JSON Schema counts characters, `5.0` is an integer to JSON
# Schema but not to serde). Its converse, `negative_data_rejection`, is checked.
#
# The event stream (`GET .../events`) is excluded: it never ends, which a request/response
# fuzzer can only report as a timeout; tests/api/events.rs covers it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."

SCHEMATHESIS_VERSION=4.32.5
max_time="${1:-90}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/schemathesis-venv"
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet -p streamguard-registry --bin streamguard-registry

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export SG_ADMIN_TOKEN="schemathesis-admin-token-0001"
export SG_SUPER_ADMIN_TOKEN="schemathesis-super-token-0001"
export SG_TELEMETRY_TOKEN="schemathesis-telemetry-token-0001"
# No rate limit (429s would only hide operations) and no background checks (none of the
# providers it creates exists).
cat >"$work/config.json" <<JSON
{"rateLimit": {"perSecond": 0, "burst": 1}, "healthIntervalMs": 0}
JSON
mkfifo "$work/out"
STREAMGUARD_ADMIN_TOKEN="$SG_ADMIN_TOKEN" \
STREAMGUARD_SUPER_ADMIN_TOKEN="$SG_SUPER_ADMIN_TOKEN" \
STREAMGUARD_TELEMETRY_TOKEN="$SG_TELEMETRY_TOKEN" \
RUST_LOG=warn \
  "$target/debug/streamguard-registry" --config "$work/config.json" --addr 127.0.0.1:0 \
  --db "$work/registry.db" >"$work/out" 2>"$work/registry.log" &
pid=$!
# The registry prints its address once it listens; a bounded read, no polling.
exec 3<"$work/out"
if ! read -r -t 20 line <&3; then
  echo "the registry did not start:" >&2
  cat "$work/registry.log" >&2
  exit 1
fi
url="${line##* }"
echo "registry at $url (pid $pid)"

status=0
# From the scratch dir: schemathesis keeps a cache (.schemathesis/) in the current directory.
cd "$work"
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$url/api/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --exclude-path /api/streaming/providers/events \
  --max-time "$max_time" \
  --workers 1 \
  --seed 18 \
  --request-timeout 10 \
  --report har --report-har-path "$work/requests.har" \
  --no-color || status=$?

# Every request it sent (the coverage, fuzzing and stateful phases and the checks' own).
python3 -c 'import json, sys; print("requests sent:", len(json.load(open(sys.argv[1]))["log"]["entries"]))' \
  "$work/requests.har" || true

if grep -q "panicked\|internal error" "$work/registry.log"; then
  echo "the registry logged an internal error or a panic:" >&2
  grep "panicked\|internal error" "$work/registry.log" >&2
  status=1
fi
exit "$status"
