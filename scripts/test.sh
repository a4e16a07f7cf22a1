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

# ffprobe: the registry probes RTMP targets with it (its RTMP probe test needs it).
if ! command -v ffprobe >/dev/null; then
  step "installing ffmpeg (ffprobe)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null \
      || echo "warning: could not install ffmpeg; the registry's RTMP probe test will report SKIPPED" >&2
  else
    echo "warning: no apt-get; the registry's RTMP probe test will report SKIPPED" >&2
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace
