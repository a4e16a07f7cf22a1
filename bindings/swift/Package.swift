// swift-tools-version:5.9
// The Swift package of Streamguard: the UniFFI-generated `Streamguard.swift` plus the hand-written
// `StreamguardSwift.swift` (cancellable starts, `events()` as an AsyncStream, adapter defaults)
// over the C module `StreamguardFFI` (the generated header and the Rust library).
//
// The generated files are not committed: `bindings/scripts/swift.sh stage DIR` copies this package
// with them into DIR (`bindings/test.sh` does that for the XCTest run). On Linux the module map
// links `libstreamguard_ffi.so`: pass its directory with `-Xlinker -L<dir>` and put it on
// `LD_LIBRARY_PATH` to run. On Apple platforms replace the `StreamguardFFI` system library with
// the XCFramework (see bindings/README.md, "iOS (Swift)").
import PackageDescription

let package = Package(
    name: "Streamguard",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [
        .library(name: "Streamguard", targets: ["Streamguard"]),
    ],
    targets: [
        .systemLibrary(name: "StreamguardFFI", path: "Sources/StreamguardFFI"),
        .target(name: "Streamguard", dependencies: ["StreamguardFFI"], path: "Sources/Streamguard"),
        .testTarget(
            name: "StreamguardTests",
            dependencies: ["Streamguard"],
            path: "Tests/StreamguardTests"
        ),
    ]
)
