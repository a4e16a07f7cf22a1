// Cost of crossing the Swift <-> Rust boundary (run by bindings/bench.sh against the release
// library, built with `swift build -c release`): a cheap synchronous call, an async call into the
// engine's runtime, and a start/end cycle whose adapter calls run as Swift async methods. The
// same measurements as tests/python/bench.py and tests/kotlin/src/Bench.kt; reuses the XCTest
// suite's fixtures (Support.swift, copied in when staged).

import Dispatch
import Foundation
import Streamguard

/// `n` with thousands separators, as the Python and Kotlin lines print it.
func grouped(_ n: Double) -> String {
    var digits = String(Int(n.rounded()))
    var out = ""
    while digits.count > 3 {
        out = "," + digits.suffix(3) + out
        digits.removeLast(3)
    }
    return digits + out
}

func rate(_ label: String, _ n: Int, _ nanos: UInt64, _ unit: String = "calls") {
    let seconds = Double(nanos) / 1e9
    let perSecond = grouped(Double(n) / seconds)
    let padded = label.padding(toLength: max(44, label.count), withPad: " ", startingAt: 0)
    print("swift   \(padded) \(String(repeating: " ", count: max(0, 10 - perSecond.count)))\(perSecond) \(unit)/s  "
        + String(format: "%8.3f", seconds / Double(n) * 1e6) + " us/\(unit.dropLast())")
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func timed(_ n: Int, _ body: () throws -> Void) rethrows -> UInt64 {
    let start = now()
    for _ in 0..<n { try body() }
    return now() - start
}

func timedAsync(_ n: Int, _ body: (Int) async throws -> Void) async rethrows -> UInt64 {
    let start = now()
    for i in 0..<n { try await body(i) }
    return now() - start
}

let scale = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 1
let registry = Registry()
let journal = Journal()
let m = try StreamingProviderManager(
    config: ManagerConfig(baseUrl: registry.baseUrl, healthCheckIntervalMs: 60_000))
try m.registerAdapter(name: "agora", adapter: ScriptedAdapter("agora", journal))

// Warm-up of both sync paths. The results are summed and checked, so the optimizer cannot drop
// a call (it could not anyway: each is a call into the library).
var tasks: UInt64 = 0, sessions = 0
_ = timed(1_000) { tasks &+= m.taskCount(); sessions += m.session(streamId: "x") == nil ? 0 : 1 }
var n = 200_000 / scale
rate("taskCount() (sync)", n, timed(n) { tasks &+= m.taskCount() })
rate("session(streamId: \"x\") -> nil (sync)", n, timed(n) { sessions += m.session(streamId: "x") == nil ? 0 : 1 })
precondition(tasks > 0 && sessions == 0, "unexpected results: \(tasks) tasks, \(sessions) sessions")

_ = try await m.startStream(streamId: "warm")
try await m.endStream(streamId: "warm")
n = 20_000 / scale
rate("await endStream(ended) (async, Rust only)", n,
     try await timedAsync(n) { _ in try await m.endStream(streamId: "warm") })  // a no-op in the engine

n = 2_000 / scale
rate("startStream+endStream (2 async adapter calls)", n, try await timedAsync(n) { i in
    _ = try await m.startStream(streamId: "s\(i)")  // adapter.startStream runs in Swift
    try await m.endStream(streamId: "s\(i)")  // adapter.leaveStream runs in Swift
}, "cycles")
try await m.shutdown()
registry.close()
