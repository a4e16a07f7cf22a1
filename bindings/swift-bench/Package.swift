// swift-tools-version:5.9
// The Swift figures of bindings/bench.sh: an executable over the Streamguard package, built with
// `swift build -c release` against the release-profile library. Not a test (bindings/test.sh
// does not build it). `run_swift_bench` in bindings/scripts/lib.sh stages it next to the staged
// Streamguard package (`../streamguard-swift`) and copies the test suite's Support.swift (the
// loopback registry, Journal, ScriptedAdapter) into Sources/StreamguardBench, as Bench.kt reuses
// the Kotlin test fixtures.
import PackageDescription

let package = Package(
    name: "StreamguardBench",
    platforms: [.macOS(.v12)],
    dependencies: [
        .package(path: "../streamguard-swift"),
    ],
    targets: [
        .executableTarget(
            name: "StreamguardBench",
            dependencies: [.product(name: "Streamguard", package: "streamguard-swift")],
            path: "Sources/StreamguardBench"
        ),
    ]
)
