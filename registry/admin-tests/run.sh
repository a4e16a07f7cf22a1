#!/usr/bin/env bash
# Browser end-to-end tests of the registry's admin dashboard (/admin):
# installs what is missing (Debian's chromium, the npm packages of this folder),
# builds the registry binary, and runs the tests with node's test runner in
# headless Chromium driven by playwright-core. Exits non-zero on any failure.
#
#   registry/admin-tests/run.sh               # build + tests
#   registry/admin-tests/run.sh --screenshot  # also refresh registry/docs/dashboard.png
#
# CARGO_TARGET_DIR is respected (default: the workspace's target/). Playwright
# never downloads a browser here: the tests use /usr/bin/chromium (CHROMIUM_PATH overrides).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$workspace/target}"
case "$target_dir" in
  /*) ;;
  *) target_dir="$PWD/$target_dir" ;;
esac
export CARGO_TARGET_DIR="$target_dir"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
screenshot=false
for arg in "$@"; do
  case "$arg" in
    --screenshot) screenshot=true ;;
    *) echo "usage: $0 [--screenshot]" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  step "installing chromium (Debian package)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
"$chromium" --version 2>/dev/null | grep -i chromium || { echo "chromium at $chromium does not run" >&2; exit 1; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node and npm are needed (Node.js 20 or newer)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $(node --version) is too old: playwright-core needs 20 or newer" >&2
  exit 1
fi
echo "node $(node --version)"

step "npm ci (playwright-core, no browser download)"
cd "$here"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

step "cargo build -p streamguard-registry (target dir $CARGO_TARGET_DIR)"
(cd "$workspace" && cargo build -p streamguard-registry)
export REGISTRY_BIN="$CARGO_TARGET_DIR/debug/streamguard-registry"
export CHROMIUM_PATH="$chromium"

step "browser tests (node --test)"
start=$(date +%s)
status=0
# Each test bounds its own waits (60 s per test); this bounds the whole run.
timeout --kill-after=10 600 node --test --test-reporter=spec --test-concurrency=1 tests/*.test.mjs || status=$?
echo "browser tests took $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
  echo "browser tests FAILED (exit $status)" >&2
  exit "$status"
fi

if [ "$screenshot" = true ]; then
  step "screenshot -> registry/docs/dashboard.png"
  node screenshot.mjs "$workspace/registry/docs/dashboard.png"
fi
