# Shared steps of bindings/test.sh and bindings/bench.sh: install what is missing, build the
# library and the bindgen, generate the Python/Kotlin/Swift sources, build the wheel, compile
# the Kotlin sources. Sourced, not run; expects `set -euo pipefail` from the caller.

BINDINGS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$BINDINGS/.." && pwd)"
BUILD="$BINDINGS/build"
MANIFEST="$BINDINGS/uniffi/Cargo.toml"
KOTLIN_VERSION=2.4.20
KOTLIN_TOOLS="$REPO/tests/kotlin/.tools"
KOTLINC_HOME="$KOTLIN_TOOLS/node_modules/kotlin-compiler"
TOOLS_VENV="$BINDINGS/.venv"

step() { printf '\n== %s\n' "$*"; }

# The workspace's target dir, or CARGO_TARGET_DIR when set (cargo metadata applies both rules).
target_dir() {
    cargo metadata --manifest-path "$MANIFEST" --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

ensure_apt_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        step "apt-get install ${missing[*]}"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_tools() {
    # JNA and JUnit 5 from Debian; a JDK and npm only if the machine has none.
    local pkgs=(libjna-java junit5)
    command -v javac >/dev/null || pkgs+=(openjdk-17-jdk-headless)
    command -v npm >/dev/null || pkgs+=(npm)
    ensure_apt_packages "${pkgs[@]}"

    if ! "$TOOLS_VENV/bin/maturin" --version 2>/dev/null | grep -q '^maturin 1\.'; then
        step "pip install maturin into $TOOLS_VENV"
        python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install -q 'maturin>=1.16,<2'
    fi

    if ! grep -qs "\"version\": \"$KOTLIN_VERSION\"" "$KOTLINC_HOME/package.json"; then
        step "npm install kotlin-compiler@$KOTLIN_VERSION into $KOTLIN_TOOLS"
        mkdir -p "$KOTLIN_TOOLS"
        npm install --prefix "$KOTLIN_TOOLS" --no-audit --no-fund --loglevel=error \
            "kotlin-compiler@$KOTLIN_VERSION"
    fi
}

# build_library PROFILE: the cdylib built with cargo profile PROFILE (dev, release,
# release-ffi...) and the bindgen binary; sets LIB and BINDGEN.
build_library() {
    local profile="$1" dir="$1"
    [ "$profile" = dev ] && dir=debug
    step "cargo rustc --profile $profile -p streamguard-ffi --crate-type cdylib; cargo build -p streamguard-uniffi-bindgen"
    # Only the cdylib, as maturin builds it: built next to the staticlib and rlib, the cdylib
    # gets less from LTO (3.7 MB instead of 2.9 MB stripped with release-ffi).
    cargo rustc --profile "$profile" --manifest-path "$MANIFEST" -p streamguard-ffi --lib \
        --crate-type cdylib
    # The bindgen is always the dev build: its speed does not matter, and maturin runs that
    # one too (`cargo run --bin uniffi-bindgen`). Two invocations: built together, the
    # bindgen's `cli` feature of uniffi would be unified into the library build and differ
    # from what maturin builds, rebuilding it every time.
    cargo build --manifest-path "$MANIFEST" -p streamguard-uniffi-bindgen
    TARGET="$(target_dir)"
    LIB="$TARGET/$dir/libstreamguard_ffi.so"
    BINDGEN="$TARGET/debug/uniffi-bindgen"
}

# generate_sources: Python, Kotlin and Swift from the library's metadata into build/generated.
generate_sources() {
    step "uniffi-bindgen generate -> build/generated"
    rm -rf "$BUILD/generated"
    # Run from the crate: the bindgen finds uniffi.toml through `cargo metadata` of the current
    # directory's workspace, and silently falls back to defaults elsewhere.
    (cd "$BINDINGS/uniffi" &&
        "$BINDGEN" generate "$LIB" -l python -l kotlin -l swift -o "$BUILD/generated" --no-format)
    # Guard against exactly that fallback (package `uniffi.streamguard`, lower-case Swift module).
    test -f "$BUILD/generated/io/streamguard/streamguard.kt"
    test -f "$BUILD/generated/StreamguardFFI.h"
}

# build_wheel PROFILE WHEEL_DIR: the Python wheel (maturin runs the same bindgen itself).
build_wheel() {
    local profile="$1" out="$2"
    step "maturin build --profile $profile -> ${out#"$BINDINGS"/}"
    rm -rf "$out"
    (cd "$BINDINGS/python" &&
        "$TOOLS_VENV/bin/maturin" build --profile "$profile" --quiet -o "$out" 2>&1 |
        grep -v 'looks like an old-style --config override file' || true)
    WHEEL="$(ls "$out"/streamguard-*.whl)"
}

# fresh_venv DIR: a new venv with the wheel and pytest, as a user would install it.
fresh_venv() {
    local dir="$1"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$WHEEL" pytest "mypy>=1.10"
}

KOTLIN_CP="/usr/share/java/jna.jar:$KOTLINC_HOME/lib/kotlinx-coroutines-core-jvm.jar:$KOTLINC_HOME/lib/kotlin-test.jar:/usr/share/java/junit-jupiter-api.jar:/usr/share/java/apiguardian-api.jar:/usr/share/java/opentest4j.jar"
KOTLIN_CLASSES="$BUILD/kotlin-classes"

# compile_kotlin: generated bindings + tests + bench; skipped when no input changed (kotlinc
# takes about a minute here).
compile_kotlin() {
    local sources=("$BUILD/generated/io/streamguard/streamguard.kt" "$BINDINGS"/kotlin/*.kt
        "$REPO"/tests/kotlin/src/*.kt)
    local stamp
    stamp="$(cat "${sources[@]}" | sha256sum | cut -d' ' -f1)"
    if [ -f "$KOTLIN_CLASSES/.inputs" ] && [ "$(cat "$KOTLIN_CLASSES/.inputs")" = "$stamp" ]; then
        step "kotlinc: sources unchanged, reusing build/kotlin-classes"
        return
    fi
    step "kotlinc $KOTLIN_VERSION -> build/kotlin-classes"
    rm -rf "$KOTLIN_CLASSES"
    "$KOTLINC_HOME/bin/kotlinc" -nowarn -d "$KOTLIN_CLASSES" -classpath "$KOTLIN_CP" "${sources[@]}"
    echo "$stamp" >"$KOTLIN_CLASSES/.inputs"
}

# Swift, for real: Debian trixie's swiftlang 6.0.3 in a chroot under build/ (the host is
# bookworm, which has no Swift). Created once (debootstrap ~30 s, swiftlang ~1 min, ~2.6 GB) and
# reused while build/swift-chroot/.ready exists; nothing outside build/ changes.
SWIFT_CHROOT="$BUILD/swift-chroot"
SWIFT_PACKAGES=(swiftlang libc6-dev libstdc++-14-dev)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The Debian mirror of this machine's own apt sources (deb822 or one-line form).
debian_mirror() {
    local uri
    uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
    [ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1)"
    echo "${uri:-http://deb.debian.org/debian}"
}

# with_proc DIR CMD...: run CMD with /proc bind-mounted into the chroot DIR, always unmounted.
with_proc() {
    local dir="$1"
    shift
    (
        mounted=""
        if ! mountpoint -q "$dir/proc"; then
            as_root mount --bind /proc "$dir/proc"
            mounted=1
        fi
        trap '[ -z "$mounted" ] || as_root umount "$dir/proc"' EXIT
        "$@"
    )
}

ensure_swift_chroot() {
    if [ -f "$SWIFT_CHROOT/.ready" ]; then
        return
    fi
    step "create the Swift chroot (Debian trixie + ${SWIFT_PACKAGES[*]}) in ${SWIFT_CHROOT#"$REPO"/}"
    ensure_apt_packages debootstrap
    local tmp="$SWIFT_CHROOT.tmp"
    if [ -d "$tmp" ]; then
        ! mountpoint -q "$tmp/proc" || as_root umount "$tmp/proc"
        as_root rm -rf --one-file-system "$tmp"
    fi
    as_root debootstrap --variant=minbase trixie "$tmp" "$(debian_mirror)" >"$BUILD/swift-debootstrap.txt" 2>&1 ||
        { tail -20 "$BUILD/swift-debootstrap.txt"; return 1; }
    as_root cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    with_proc "$tmp" as_root chroot "$tmp" sh -c "apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${SWIFT_PACKAGES[*]} >/dev/null &&
        apt-get clean"
    as_root touch "$tmp/.ready"
    as_root mv "$tmp" "$SWIFT_CHROOT"
}

# run_swift_tests: stage the package (bindings/swift + the generated Swift and header) and the
# library into the chroot, then `swift build` and `swift test` there. Output in build/swift-test.txt.
run_swift_tests() {
    local pkg="$SWIFT_CHROOT/src/streamguard-swift"
    as_root mkdir -p "$pkg" "$SWIFT_CHROOT/src/lib"
    # Fresh copies of the hand-written files; .build stays for incremental builds. The generated
    # files are copied only when they changed, so an unchanged module is not rebuilt.
    as_root rm -rf "$pkg/Package.swift" "$pkg/Tests"
    as_root find "$pkg/Sources" -type f ! -name Streamguard.swift ! -name StreamguardFFI.h -delete 2>/dev/null || true
    as_root cp -a "$BINDINGS/swift/Package.swift" "$BINDINGS/swift/Tests" "$pkg/"
    as_root cp -a "$BINDINGS/swift/Sources" "$pkg/"
    local from to
    for from in Streamguard.swift:Sources/Streamguard StreamguardFFI.h:Sources/StreamguardFFI; do
        to="$pkg/${from#*:}/${from%%:*}"
        cmp -s "$BUILD/generated/${from%%:*}" "$to" || as_root cp "$BUILD/generated/${from%%:*}" "$to"
    done
    as_root cp "$LIB" "$SWIFT_CHROOT/src/lib/libstreamguard_ffi.so"
    # Line-buffered, so a hung test shows which one; bounded, so it cannot hang CI.
    with_proc "$SWIFT_CHROOT" as_root chroot "$SWIFT_CHROOT" env HOME=/root LD_LIBRARY_PATH=/src/lib \
        sh -c 'cd /src/streamguard-swift &&
            swift build --build-tests -Xlinker -L/src/lib &&
            timeout 600 stdbuf -oL swift test --skip-build' \
        >"$BUILD/swift-test.txt" 2>&1
}
