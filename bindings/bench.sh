#!/usr/bin/env bash
# Benchmarks of the UniFFI boundary against the shipped library (cargo profile release-ffi:
# release + opt-level "s", fat LTO, one codegen unit; override with STREAMGUARD_FFI_PROFILE):
# calls per second of a cheap synchronous method and of async round trips (into the engine
# only, and through a host adapter) from Python, Kotlin and Swift (swiftlang in the Debian trixie
# chroot that bindings/test.sh uses, created here if missing; needs root or sudo); then the size
# of the stripped library. Pass a divisor to shorten the runs (e.g. `bench.sh 10`). Honours
# CARGO_TARGET_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"
scale="${1:-1}"
profile="${STREAMGUARD_FFI_PROFILE:-release-ffi}"

ensure_tools
build_library "$profile"
generate_sources
build_wheel "$profile" "$BUILD/wheels-release"
fresh_venv "$BUILD/venv-bench"
compile_kotlin

step "Python (wheel, profile $profile)"
(cd "$REPO/tests/python" && "$BUILD/venv-bench/bin/python" bench.py "$scale")

step "Kotlin/JNA (library, profile $profile)"
java -Djna.library.path="$(dirname "$LIB")" \
    -cp "$KOTLIN_CLASSES:$KOTLIN_CP:$KOTLINC_HOME/lib/kotlin-stdlib.jar" \
    io.streamguard.tests.BenchKt "$scale"

step "Swift (swift build -c release in the chroot ${SWIFT_CHROOT#"$REPO"/}, library profile $profile)"
ensure_swift_chroot
run_swift_bench "$scale"

step "Library size (profile $profile)"
# The library bindings are generated from keeps its symbols and metadata; apps ship a
# stripped copy.
mkdir -p "$BUILD/release-size"
cp "$LIB" "$BUILD/release-size/"
strip "$BUILD/release-size/$(basename "$LIB")"
printf 'unstripped %s\nstripped   %s\n' \
    "$(du -h "$LIB" | cut -f1)" \
    "$(du -h "$BUILD/release-size/$(basename "$LIB")" | cut -f1) ($(stat -c %s "$BUILD/release-size/$(basename "$LIB")") bytes)"
