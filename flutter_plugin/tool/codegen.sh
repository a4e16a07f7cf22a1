#!/usr/bin/env bash
# Regenerate the flutter_rust_bridge glue (rust/src/frb_generated.rs and lib/src/rust/**) from
# rust/src/api/, with flutter_rust_bridge_codegen 2.13.0 (installed if missing).
#
#   tool/codegen.sh            regenerate in place (tool/check.sh runs it and compares)
#
# No Dart/Flutter SDK is needed: every Dart-side step is off in flutter_rust_bridge.yaml, and
# the codegen's "is a toolchain installed" probe (`dart --version`, `flutter --version`) is
# answered by stub scripts placed on PATH for this run only, in a temporary directory.
set -euo pipefail

FRB_VERSION=2.13.0
plugin=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ----- tools -------------------------------------------------------------------------------------
# Installs go to cargo's bin directory; their build goes to its own target directory so it never
# waits for (or invalidates) the plugin's builds.
install_target=${FRB_INSTALL_TARGET_DIR:-${TMPDIR:-/tmp}/streamguard-frb-install}

ensure_codegen() {
    if flutter_rust_bridge_codegen --version 2>/dev/null | grep -qx "flutter_rust_bridge_codegen $FRB_VERSION"; then
        return
    fi
    echo "codegen.sh: installing flutter_rust_bridge_codegen $FRB_VERSION (several minutes)" >&2
    CARGO_TARGET_DIR=$install_target cargo install flutter_rust_bridge_codegen \
        --version "$FRB_VERSION" --locked
}

ensure_cargo_expand() {
    # The codegen reads the crate through `cargo expand` (so `#[frb]` attributes are seen as the
    # compiler sees them). Without it, the codegen would try to install one by itself.
    if cargo expand --version >/dev/null 2>&1; then
        return
    fi
    echo "codegen.sh: installing cargo-expand" >&2
    CARGO_TARGET_DIR=$install_target cargo install cargo-expand --locked
}

ensure_codegen
ensure_cargo_expand

# ----- stub toolchain ----------------------------------------------------------------------------
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
for tool in dart flutter; do
    cat > "$stub/$tool" <<'EOF'
#!/bin/sh
# Stand-in for the Dart/Flutter SDK during code generation: answers only `--version`.
if [ "$1" = "--version" ]; then
    echo "stub $(basename "$0") for flutter_rust_bridge_codegen (no SDK on this machine)"
    exit 0
fi
echo "stub $(basename "$0"): no Dart/Flutter SDK here; refusing: $*" >&2
exit 1
EOF
    chmod +x "$stub/$tool"
done

cd "$plugin"
PATH="$stub:$PATH" flutter_rust_bridge_codegen generate --config-file flutter_rust_bridge.yaml
