#!/usr/bin/env bash
# Everything about the Flutter plugin that can be checked without a Flutter SDK:
#
#   1. regenerating the flutter_rust_bridge glue changes nothing (codegen 2.13.0 installed if
#      missing, with cargo-expand);
#   2. rustfmt, clippy (warnings are errors) and the tests of the Rust facade (`cargo test`:
#      the facade driven as Dart drives it, against an HTTP registry on loopback);
#   3. the built library reports the content hash the committed Dart expects, and exports every
#      symbol the Dart side looks up (shared library and static library);
#   4. the hand-written Dart (lib/, test/, example_app/) names only methods, named arguments,
#      constructor fields and enum values that the generated Dart API has (a text check,
#      tool/dart_api_check.py: no Dart compiler here);
#   5. the Linux build integration (linux/CMakeLists.txt) builds and bundles the library when a
#      CMake project adds the plugin the way Flutter's generated_plugins.cmake does;
#   6. nothing under example_app/ but the demo crate looks like a Cargo package.
#
# The Dart tests (test/, example_app/test/) need a Flutter SDK and are not run here.
# Honours CARGO_TARGET_DIR. Exits non-zero on the first failure.
set -euo pipefail

plugin=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(cd "$plugin/.." && pwd)
crate=$plugin/rust
target=${CARGO_TARGET_DIR:-$crate/target}
export CARGO_TARGET_DIR=$target

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'check.sh: FAILED: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

# ----- tools ---------------------------------------------------------------------------------
step "tools"
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
missing=()
command -v nm >/dev/null || missing+=(binutils)
command -v python3 >/dev/null || missing+=(python3)
# The Linux CMake step (5.) builds the plugin the way a Flutter Linux app does.
command -v cmake >/dev/null || missing+=(cmake)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -q && apt-get install -y -q "${missing[@]}"
    else
        sudo apt-get update -q && sudo apt-get install -y -q "${missing[@]}"
    fi
fi
# The codegen and cargo-expand are installed by codegen.sh itself when missing.

# ----- 1. generated code is up to date -------------------------------------------------------
step "codegen: regenerate and compare"
snapshot=$(mktemp -d)
trap 'rm -rf "$snapshot"' EXIT
# What the codegen writes (lib/src/rust/, frb_generated.rs) and what it could touch with this
# configuration (lib.rs, Cargo.toml, pubspec.yaml). Only these are compared and, on a
# difference, restored: edits elsewhere (someone working while the check runs) are never touched.
generated() {
    (cd "$plugin" && {
        find lib/src/rust -type f 2>/dev/null
        printf '%s\n' rust/src/frb_generated.rs rust/src/lib.rs rust/Cargo.toml pubspec.yaml
    } | sort)
}
generated > "$snapshot/list"
(cd "$plugin" && tar -cf "$snapshot/before.tar" -T "$snapshot/list")
t0=$SECONDS
"$plugin/tool/codegen.sh" > "$snapshot/codegen.log" 2>&1 || {
    cat "$snapshot/codegen.log" >&2
    fail "flutter_rust_bridge_codegen failed"
}
mkdir "$snapshot/before"
(cd "$snapshot/before" && tar -xf "$snapshot/before.tar")
generated > "$snapshot/list-after"
changed=0
diff -u "$snapshot/list" "$snapshot/list-after" || changed=1
while read -r f; do
    diff -u "$snapshot/before/$f" "$plugin/$f" || changed=1
done < "$snapshot/list"
if ((changed)); then
    # Put the committed output back; regenerating on purpose is tool/codegen.sh's job.
    (cd "$plugin" && comm -13 "$snapshot/list" "$snapshot/list-after" | xargs -r rm -f)
    (cd "$plugin" && tar -xf "$snapshot/before.tar")
    fail "the committed bridge code is not what the codegen generates: run flutter_plugin/tool/codegen.sh and commit the result"
fi
echo "generated code unchanged ($((SECONDS - t0)) s)"

# ----- 2. Rust facade: format, lints, tests --------------------------------------------------
cd "$crate"
step "cargo fmt --check"
cargo fmt --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
step "cargo test"
t0=$SECONDS
# tests/placement.rs runs the workspace's real registry binary.
cargo build --quiet --manifest-path "$repo/Cargo.toml" -p streamguard-registry --bin streamguard-registry
export STREAMGUARD_REGISTRY_BIN="$target/debug/streamguard-registry"
cargo test --quiet
echo "tests passed ($((SECONDS - t0)) s)"

# ----- 3. the library the Dart side loads ----------------------------------------------------
step "library: content hash and exported symbols"
cargo build --quiet --lib
so=$target/debug/libstreamguard_flutter.so
staticlib=$target/debug/libstreamguard_flutter.a
[[ -f $so && -f $staticlib ]] || fail "no $so / $staticlib after cargo build"

dart_hash=$(grep -oE 'int get rustContentHash => -?[0-9]+;' "$plugin/lib/src/rust/frb_generated.dart" |
    grep -oE -- '-?[0-9]+') || fail "no rustContentHash in lib/src/rust/frb_generated.dart"
lib_hash=$(python3 - "$so" <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
f = lib.frb_get_rust_content_hash
f.restype = ctypes.c_int32
print(f())
EOF
)
[[ $dart_hash == "$lib_hash" ]] ||
    fail "content hash: library says $lib_hash, lib/src/rust/frb_generated.dart expects $dart_hash"
echo "content hash $lib_hash matches lib/src/rust/frb_generated.dart"

# What Dart looks up: the names the generated Dart passes to `_lookup` (frbgen_*), and the
# entry points the flutter_rust_bridge Dart runtime 2.13.0 binds to, which are the
# `#[no_mangle]` functions of the Rust runtime crates of the same version (frb_*, and
# allo-isolate's store_dart_post_cobject).
wanted=$snapshot/wanted
grep -ohE "_lookup<[^']*'[A-Za-z0-9_]+'" "$plugin"/lib/src/rust/*.dart | grep -oE "'[A-Za-z0-9_]+'" |
    tr -d "'" > "$wanted"
[[ -s $wanted ]] || fail "found no symbol lookups in the generated Dart"
runtime_dirs=$(cargo metadata --format-version 1 --quiet | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] in ("flutter_rust_bridge", "allo-isolate"):
        print(os.path.dirname(p["manifest_path"]) + "/src")
')
[[ $(wc -l <<< "$runtime_dirs") -eq 2 ]] || fail "cannot locate the flutter_rust_bridge runtime sources"
# shellcheck disable=SC2086
grep -rhE -A3 'no_mangle' $runtime_dirs | grep -oE 'pub (unsafe )?extern "C" fn [A-Za-z0-9_]+' |
    awk '{print $NF}' | grep -v '^wasm_' >> "$wanted"
sort -u -o "$wanted" "$wanted"
nm -D --defined-only "$so" | awk '{print $3}' | sort -u > "$snapshot/exported"
nm --defined-only "$staticlib" 2>/dev/null | awk '$2 == "T" {print $3}' | sort -u > "$snapshot/static"
missing_so=$(comm -23 "$wanted" "$snapshot/exported")
missing_a=$(comm -23 "$wanted" "$snapshot/static")
[[ -z $missing_so ]] || fail "not exported by $so: $missing_so"
[[ -z $missing_a ]] || fail "not defined in $staticlib: $missing_a"
echo "all $(wc -l < "$wanted") symbols Dart looks up are exported (.so) and defined (.a)"

# ----- 4. hand-written Dart against the generated API --------------------------------------
step "Dart: hand-written code against the generated API"
python3 "$plugin/tool/dart_api_check.py"

# ----- 5. Linux build integration ----------------------------------------------------------
step "linux/CMakeLists.txt: build and bundle as a Flutter app would"
t0=$SECONDS
host=$snapshot/cmake-host
mkdir -p "$host"
# What Flutter's generated_plugins.cmake does with an FFI plugin: add its linux/ folder and
# install the files it lists in <plugin>_bundled_libraries into the bundle's lib/.
cat > "$host/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.14)
project(streamguard_host NONE)
add_subdirectory("$plugin/linux" plugins/streamguard)
install(FILES \${streamguard_bundled_libraries} DESTINATION lib)
CMAKE
# Share cargo's release build with later runs instead of a fresh one in the CMake build tree.
if ! (export STREAMGUARD_CARGO_TARGET_DIR=$target &&
    cmake -S "$host" -B "$host/build" &&
    cmake --build "$host/build" &&
    cmake --install "$host/build" --prefix "$host/bundle") > "$host/log" 2>&1; then
    cat "$host/log" >&2
    fail "the Linux CMake integration did not build"
fi
bundled=$host/bundle/lib/libstreamguard_flutter.so
[[ -f $bundled ]] || fail "the Linux bundle has no lib/libstreamguard_flutter.so"
bundled_hash=$(python3 -c 'import ctypes, sys
f = ctypes.CDLL(sys.argv[1]).frb_get_rust_content_hash
f.restype = ctypes.c_int32
print(f())' "$bundled")
[[ $bundled_hash == "$dart_hash" ]] || fail "bundled library: hash $bundled_hash, Dart expects $dart_hash"
echo "CMake built and bundled lib/libstreamguard_flutter.so (release), content hash matches ($((SECONDS - t0)) s)"

# ----- 6. example_app does not confuse cargo -------------------------------------------------
step "example_app: no stray Cargo packages"
stray=$(cd "$repo" && find example_app -name Cargo.toml -not -path 'example_app/demo/*')
[[ -z $stray ]] || fail "Cargo.toml outside example_app/demo: $stray"
echo ok

printf '\ncheck.sh: all checks passed in %d s (Dart tests need a Flutter SDK: not run)\n' \
    "$((SECONDS - started))"
