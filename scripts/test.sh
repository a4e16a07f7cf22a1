#!/usr/bin/env bash
# Runs every check and test of the repository: formatting, clippy with warnings as errors,
# and the whole test suite. Installs what it needs first (idempotent), so it works on a
# fresh machine as well as on a developer's.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
cargo --version

# Real-media and capacity tests need ffmpeg/ffprobe, nginx with the RTMP module and Redis
# (Debian packages). Their tests start their own servers on free loopback ports, so the
# packages must not start system services: policy-rc.d says so while installing.
need=()
command -v ffprobe >/dev/null || need+=(ffmpeg)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need+=(redis-server)
# The registry's PostgreSQL tests start their own server (initdb + postgres as nobody).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# The Flutter plugin's Linux CMake build (flutter_plugin/tool/check.sh) needs cmake.
command -v cmake >/dev/null || need+=(cmake)
# libFuzzer (fuzz/run.sh) is C++; schemathesis runs in a Python venv.
command -v c++ >/dev/null || need+=(g++)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
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

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

# The fuzz workspace: its targets (linked with libFuzzer, without the sanitizer build that
# `fuzz/run.sh` makes, which takes far longer) and every committed corpus file through its
# target's property. `fuzz/run.sh 0` replays them under libFuzzer and ASan; long runs stay out.
step "fuzz targets: build and replay the committed corpora"
cargo test --manifest-path fuzz/Cargo.toml

step "registry API against its own OpenAPI document (schemathesis, live registry, 60 s)"
./registry/tests/schemathesis/run.sh 60

step "registry API tests on PostgreSQL"
STREAMGUARD_TEST_DB=postgres cargo test -p streamguard-registry --test api

step "registry admin dashboard in headless Chromium"
./registry/admin-tests/run.sh

step "bindings: Python (pytest), Kotlin (JUnit 5), Swift (header check, XCTest in a trixie chroot)"
./bindings/test.sh

step "Flutter plugin: codegen freshness, facade tests, library hash and symbols"
./flutter_plugin/tool/check.sh
