#!/usr/bin/env bash
# Build and test the UniFFI bindings from a clean machine: installs what is missing (Debian
# libjna-java + junit5, maturin in bindings/.venv, kotlin-compiler from npm in
# tests/kotlin/.tools), builds the debug library and the bindgen, generates Python/Kotlin/Swift
# into bindings/build/generated, builds the wheel and installs it into a fresh venv, then runs
# the Rust unit tests, pytest (tests/python), the JUnit 5 tests (tests/kotlin), the Swift
# header/symbol check and the XCTest suite of bindings/swift (in a Debian trixie chroot with
# swiftlang, created once under bindings/build/swift-chroot; needs root or sudo). Exits non-zero
# if anything fails. Honours CARGO_TARGET_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"
start=$SECONDS

ensure_tools
build_library dev
generate_sources
build_wheel dev "$BUILD/wheels"

# The placement tests (tests/python/test_placement.py, tests/kotlin/src/PlacementTest.kt) run
# the workspace's real registry as a child process.
step "cargo build -p streamguard-registry (the real registry of the placement tests)"
cargo build --manifest-path "$REPO/Cargo.toml" -p streamguard-registry --bin streamguard-registry
export STREAMGUARD_REGISTRY_BIN="$TARGET/debug/streamguard-registry"

failed=()

step "cargo test -p streamguard-ffi"
if cargo test --manifest-path "$MANIFEST" -p streamguard-ffi --lib >"$BUILD/rust-test.txt" 2>&1; then
    grep -E '^test result' "$BUILD/rust-test.txt"
else
    tail -60 "$BUILD/rust-test.txt"
    failed+=(rust)
fi

step "pytest tests/python (wheel installed into a fresh venv)"
fresh_venv "$BUILD/venv-test"
# Run from outside the source tree so `import streamguard` can only find the installed wheel.
if ! (cd "$BUILD" && "$BUILD/venv-test/bin/python" -m pytest "$REPO/tests/python" \
    -p no:cacheprovider -q -ra --durations=5); then
    failed+=(python)
fi

compile_kotlin
step "JUnit 5 tests/kotlin (JNA loads $(basename "$LIB") from $(dirname "$LIB"))"
junit_out="$BUILD/junit.txt"
set +e
kotlin_run_cp="$KOTLIN_CLASSES:$KOTLIN_CP:$KOTLINC_HOME/lib/kotlin-stdlib.jar"
# streamguard.test.classpath: for the test that starts a child JVM.
java -Djna.library.path="$(dirname "$LIB")" -Dstreamguard.test.classpath="$kotlin_run_cp" \
    -jar /usr/share/java/junit-platform-console-standalone.jar \
    -cp "$kotlin_run_cp" \
    --scan-classpath "$KOTLIN_CLASSES" --fail-if-no-tests --disable-banner \
    --disable-ansi-colors --details=tree >"$junit_out" 2>&1
junit_status=$?
set -e
grep -E '✘|tests (successful|failed|found)' "$junit_out" || true
junit_passed=$(sed -n 's/^\[ *\([0-9]*\) tests successful.*/\1/p' "$junit_out")
junit_failed=$(sed -n 's/^\[ *\([0-9]*\) tests failed.*/\1/p' "$junit_out")
echo "junit: ${junit_passed:-0} passed, ${junit_failed:-?} failed"
[ "$junit_status" = 0 ] || { tail -80 "$junit_out"; failed+=(kotlin); }

step "Swift: header compiles and every declared symbol is exported"
python3 "$BINDINGS/scripts/check_swift_ffi.py" "$BUILD/generated/StreamguardFFI.h" "$LIB" ||
    failed+=(swift-header)

step "XCTest bindings/swift (swiftlang 6.0.3 in the chroot ${SWIFT_CHROOT#"$REPO"/})"
swift_start=$SECONDS
if ensure_swift_chroot && run_swift_tests; then
    grep -E "^\s*Executed .* tests" "$BUILD/swift-test.txt" | tail -1
else
    grep -E "error:|failed" "$BUILD/swift-test.txt" | head -40 || true
    tail -40 "$BUILD/swift-test.txt"
    failed+=(swift)
fi
echo "swift: $((SECONDS - swift_start)) s"

step "done in $((SECONDS - start)) s"
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all binding tests passed"
