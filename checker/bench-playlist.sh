#!/usr/bin/env bash
# Playlist benchmark (not part of the tests): wall time of `streamguard check` on a large
# real-world-style playlist with the probe stub, for the checker at BEFORE_REF (built from
# `git archive`, default main) and for this work tree, side by side in one run, on the same
# files. Two playlists of ENTRIES entries each, every entry with tvg-id/tvg-name/tvg-logo/
# group-title attributes, every other one with per-stream options (#EXTVLCOPT user agent and
# referrer, or the Kodi `URL|User-Agent=...&Referer=...` form), URLs with a token in the query:
#   unique  every URL different (both versions probe ENTRIES streams)
#   dup20   every fifth entry repeats the URL (and options) of the entry three before it
# Global limit 100, 10 accounts x 2 profiles of 8 and 4 (as checker/bench.sh), in memory.
#
#   checker/bench-playlist.sh [entries=10000] [stub_delay=0] [before_ref=main] [rounds=2]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
entries="${1:-10000}"
stub_delay="${2:-0}"
before_ref="${3:-main}"
rounds="${4:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The binaries: both built into the shared target directory and copied out at once.
mkdir -p "$work/before-src"
git -C "$root" archive "$before_ref" | tar -x -C "$work/before-src"
cargo build --release --quiet --manifest-path "$work/before-src/checker/Cargo.toml"
cp "$CARGO_TARGET_DIR/release/streamguard" "$work/streamguard-before"
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
cp "$CARGO_TARGET_DIR/release/streamguard" "$work/streamguard-after"

playlist() { # $1 = every how many entries one repeats an earlier URL (0: never)
    python3 - "$entries" "$1" <<'EOF'
import sys
n, every = int(sys.argv[1]), int(sys.argv[2])
out = ['#EXTM3U x-tvg-url="http://epg.example/guide.xml.gz" tvg-shift=0']
for i in range(n):
    u = i - 3 if every and i % every == every - 1 else i
    acct = (u // 5) % 10  # a repeat stays in the account its entry would have had
    url = f"http://acct{acct}.example/live/{u}.ts?token=3f9a2c7d{u:06d}"
    out.append(f'#EXTINF:-1 tvg-id="ch{u}.example" tvg-name="Channel {u}" '
               f'tvg-logo="http://logo.example/{u}.png" group-title="Group {u % 20}",Channel {u} HD')
    if u % 4 == 0:
        out.append("#EXTVLCOPT:http-user-agent=Mozilla/5.0 (SMART-TV; Linux) Player/2.1")
        out.append("#EXTVLCOPT:http-referrer=https://portal.example/")
    elif u % 4 == 1:
        url += "|User-Agent=Mozilla%2F5.0%20Player&Referer=https%3A%2F%2Fportal.example%2F"
    out.append(url)
print("\n".join(out))
EOF
}
playlist 0 >"$work/unique.m3u"
playlist 5 >"$work/dup20.m3u"
"$here/scripts/bench-accounts.sh" >"$work/accounts.json"

stub="$here/scripts/ffprobe-stub.sh"
run() { # $1 = version, $2 = playlist; prints seconds
    local start end
    start=$(date +%s.%N)
    STUB_DELAY="$stub_delay" timeout 900 "$work/streamguard-$1" check --playlist "$work/$2.m3u" \
        --accounts "$work/accounts.json" --report "$work/$1-$2" --concurrency 100 \
        --probe-cmd "$stub" --no-progress 2>/dev/null || true
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

echo "== $entries entries with attributes and options, probe stub (delay ${stub_delay}s), global limit 100, $(nproc) cores"
printf '%-8s %-10s %10s %10s %12s %10s\n' playlist version seconds entries/s probes entries
for list in unique dup20; do
    for version in $(for _ in $(seq 1 "$rounds"); do echo before after; done); do
        secs=$(run "$version" "$list")
        read -r probes checked < <(python3 - "$work/$version-$list.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
print(s.get("unique_urls", s["checked"]), s["checked"])
EOF
)
        printf '%-8s %-10s %10.2f %10.0f %12s %10s\n' "$list" "$version" "$secs" \
            "$(echo "$checked / $secs" | bc -l)" "$probes" "$checked"
    done
done
