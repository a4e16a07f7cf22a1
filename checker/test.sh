#!/usr/bin/env bash
# Tests of the capacity crates: installs what they need when it is missing (redis-server,
# nginx-light + libnginx-mod-rtmp, ffmpeg; apt-get, as root), then runs `cargo test` for
# streamguard-redis and streamguard-checker. The rust-core capacity unit tests run with the
# workspace's own tests. Honours CARGO_TARGET_DIR. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
{ command -v ffmpeg && command -v ffprobe; } >/dev/null 2>&1 || need+=(ffmpeg)

if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test.sh: missing ${need[*]}; install them or run as root" >&2
        exit 1
    fi
    echo "test.sh: installing ${need[*]}"
    # Packages must not start their services (nginx on :80, a system redis): the tests start
    # their own on free loopback ports. policy-rc.d says so to invoke-rc.d, only if none exists.
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        made_policy=1
    fi
    status=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    } || status=$?
    [ -n "$made_policy" ] && rm -f "$policy"
    [ "$status" = 0 ] || { echo "test.sh: apt-get failed ($status)" >&2; exit "$status"; }
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo test --manifest-path "$root/capacity-redis/Cargo.toml"
cargo test --manifest-path "$root/checker/Cargo.toml"
