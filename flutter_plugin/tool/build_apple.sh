#!/bin/sh
# Builds the Rust library for the iOS or macOS build Xcode is running, as one static library
# (libstreamguard_flutter.a, fat over the build's architectures) in $BUILT_PRODUCTS_DIR, which
# the podspec force-loads into the plugin's pod. Run by the podspecs' script phase:
#
#   build_apple.sh ios|macos
#
# Xcode provides PLATFORM_NAME (iphoneos, iphonesimulator, macosx), ARCHS and BUILT_PRODUCTS_DIR.
# Needs Rust with the Apple targets:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios \
#                     aarch64-apple-darwin x86_64-apple-darwin
set -eu

here=$(cd "$(dirname "$0")" && pwd)
crate="$here/../rust"
# Xcode runs scripts with a minimal PATH.
PATH="$HOME/.cargo/bin:$PATH"
export PATH

: "${PLATFORM_NAME:?run from Xcode (PLATFORM_NAME unset)}"
: "${ARCHS:?run from Xcode (ARCHS unset)}"
: "${BUILT_PRODUCTS_DIR:?run from Xcode (BUILT_PRODUCTS_DIR unset)}"

target_for() { # $1 = Xcode arch
    case "$PLATFORM_NAME:$1" in
        iphoneos:arm64) echo aarch64-apple-ios ;;
        iphonesimulator:arm64) echo aarch64-apple-ios-sim ;;
        iphonesimulator:x86_64) echo x86_64-apple-ios ;;
        macosx:arm64) echo aarch64-apple-darwin ;;
        macosx:x86_64) echo x86_64-apple-darwin ;;
        *) echo "streamguard: unsupported platform/arch $PLATFORM_NAME/$1" >&2; exit 1 ;;
    esac
}

# The plugin's own target directory, outside the Xcode build folder so `flutter clean` keeps it.
CARGO_TARGET_DIR="${STREAMGUARD_CARGO_TARGET_DIR:-$crate/target}"
export CARGO_TARGET_DIR

libs=""
for arch in $ARCHS; do
    target=$(target_for "$arch")
    echo "streamguard: cargo build --release --lib --target $target"
    # SDKROOT from Xcode names the app's SDK; build scripts compiled for the host must not use
    # it (cc picks the right SDK per target through xcrun).
    env -u SDKROOT cargo build --release --lib --target "$target" --manifest-path "$crate/Cargo.toml"
    libs="$libs $CARGO_TARGET_DIR/$target/release/libstreamguard_flutter.a"
done

mkdir -p "$BUILT_PRODUCTS_DIR"
# One slice per architecture of this platform, so lipo never mixes device and simulator.
# shellcheck disable=SC2086
lipo -create $libs -output "$BUILT_PRODUCTS_DIR/libstreamguard_flutter.a"
