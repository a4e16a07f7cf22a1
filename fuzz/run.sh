#!/usr/bin/env bash
# Fuzzes every target (or the ones named) for SECONDS each, one after the other with one job,
# and prints executions and coverage per target:
#
#   fuzz/run.sh 600                  # ten minutes per target
#   fuzz/run.sh 60 sse playlist      # one minute for two targets
#   fuzz/run.sh 0                    # replay the committed corpora once (what scripts/test.sh runs)
#
# cargo-fuzz drives libFuzzer with `-Zsanitizer=address`, a nightly flag: with the stable
# toolchain RUSTC_BOOTSTRAP=1 lets it through (no nightly needed). New inputs go to a scratch
# corpus under the target dir, the committed seeds in fuzz/corpus/ are only read; crashes land
# in fuzz/artifacts/<target>/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.1
ALL=(provider_list health sse playlist accounts ffprobe registry_body)

seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
# Its own target dir (sanitizer flags rebuild everything): FUZZ_TARGET_DIR, else next to the
# caller's CARGO_TARGET_DIR, else fuzz/target.
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$FUZZ_TARGET_DIR"
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR-fuzz"
else
  export CARGO_TARGET_DIR="$PWD/target"
fi
# -O with debug assertions: optimised like production, overflow checks on.
flags=(-O -a)
cargo fuzz build "${flags[@]}"

scratch="$CARGO_TARGET_DIR/corpus"
failed=()
printf '%-14s %8s %12s %10s %7s %7s %7s %s\n' target seconds executions "exec/s" cov ft corpus result
for t in "${targets[@]}"; do
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  mkdir -p "$scratch/$t"
  if [ "$seconds" = 0 ]; then
    args=(-runs=0)
  else
    args=(-max_total_time="$seconds")
  fi
  start=$(date +%s)
  # The shared machine: one job, one worker; inputs up to 64 KiB, 2 GiB of memory at most.
  if cargo fuzz run "${flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
      "${args[@]}" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log and fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  took=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  # The last status line ("#N  DONE  cov: C ft: F corp: K/...").
  status=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$status" | grep -o '[0-9]*$' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$status" | grep -o '[0-9]*$' || true)
  corp=$(grep -o 'corp: [0-9]*' <<<"$status" | grep -o '[0-9]*$' || true)
  printf '%-14s %8s %12s %10s %7s %7s %7s %s\n' "$t" "$took" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "failing targets: ${failed[*]}" >&2
  exit 1
fi
