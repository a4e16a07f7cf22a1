// Test support of the Swift suite: a real provider registry over HTTP on 127.0.0.1 (POSIX
// sockets: swift-corelibs-foundation has no HTTP server), adapters written with async methods, and
// an event recorder. Every wait is bounded and waits on a condition, never on a fixed sleep.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Streamguard
import XCTest

/// Generous bound for anything that should happen within a few check intervals.
let waitSeconds: TimeInterval = 10

/// A condition with a bounded wait for a predicate evaluated under it. `locked` may be nested
/// (the predicates call locked helpers). Tests wait with `until`, which blocks a thread of its
/// own: a blocked test would hold one of the few threads (one per core) of Swift's cooperative
/// pool, which the adapters' tasks need.
class Watched: @unchecked Sendable {
    let cond = NSCondition()
    /// The thread holding `cond`, if any (only ever equal to the reading thread's own id when
    /// that thread holds it).
    private var holder: pthread_t?

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        if let holder, pthread_equal(holder, pthread_self()) != 0 { return try body() }
        cond.lock()
        holder = pthread_self()
        defer {
            holder = nil
            cond.unlock()
        }
        return try body()
    }

    func changed() {
        locked { cond.broadcast() }
    }

    /// True once `predicate` holds, false if it did not within `timeout` seconds. Blocks.
    func waitFor(_ timeout: TimeInterval = waitSeconds, _ predicate: () -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        holder = pthread_self()
        defer {
            holder = nil
            cond.unlock()
        }
        while !predicate() {
            holder = nil
            let signalled = cond.wait(until: deadline)
            holder = pthread_self()
            if !signalled { return predicate() }
        }
        return true
    }

    /// `waitFor` on a thread of its own, so the awaiting task's thread stays free.
    func until(_ timeout: TimeInterval = waitSeconds, _ predicate: @escaping () -> Bool) async -> Bool {
        await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            Thread { done.resume(returning: self.waitFor(timeout, predicate)) }.start()
        }
    }
}

/// The registry contract of README.md on 127.0.0.1, with switches for the tests. One thread
/// accepts; each connection gets one response and is closed (`Connection: close`).
final class Registry: Watched, @unchecked Sendable {
    /// The JSON objects of the provider list, comma-separated; see `setProviders`.
    private var providers =
        #"{"name":"agora","isActive":true,"priority":1,"config":{"appId":"a-1"}},"#
        + #"{"name":"zegocloud","isActive":true,"priority":2,"config":{}},"#
        + #"{"name":"webrtc","isActive":true,"priority":3,"config":{}}"#
    private var unhealthy = Set<String>()
    private var healthRequests = [String: Int]()
    private let listener: Int32
    let baseUrl: String

    override init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket() failed")
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0  // a free port
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { ptr -> Bool in
                bind(fd, ptr, len) == 0 && listen(fd, 64) == 0 && getsockname(fd, ptr, &len) == 0
            }
        }
        precondition(bound, "cannot listen on 127.0.0.1")
        listener = fd
        baseUrl = "http://127.0.0.1:\(UInt16(bigEndian: addr.sin_port))/api"
        super.init()
        Thread { [weak self] in
            while true {
                let conn = accept(fd, nil, nil)
                if conn < 0 { return }  // closed by close()
                guard let self else { _ = Glibc.close(conn); return }
                Thread { self.serve(conn) }.start()
            }
        }.start()
    }

    func healthCount(_ name: String) -> Int { locked { healthRequests[name] ?? 0 } }
    func setUnhealthy(_ name: String) { locked { _ = unhealthy.insert(name) } }
    /// Serve these provider JSON objects from the next list request on.
    func setProviders(_ json: String...) { locked { providers = json.joined(separator: ",") } }

    func close() {
        // Wakes the accept() above with an error.
        _ = shutdown(listener, Int32(SHUT_RDWR))
        _ = Glibc.close(listener)
    }

    private func serve(_ conn: Int32) {
        defer { _ = Glibc.close(conn) }
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.ends(with: Array("\r\n\r\n".utf8)) {
            let n = read(conn, &buffer, buffer.count)
            if n <= 0 { return }
            request += buffer[0..<n]
        }
        let line = String(decoding: request, as: UTF8.self).split(separator: "\r\n").first ?? ""
        let path = line.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        let body: String? = locked {
            defer { cond.broadcast() }
            if path == "/api/streaming/providers" {
                return #"{"success":true,"data":{"providers":["# + providers + "]}}"
            }
            let prefix = "/api/streaming/providers/", suffix = "/health"
            if path.hasPrefix(prefix) && path.hasSuffix(suffix) {
                let name = String(path.dropFirst(prefix.count).dropLast(suffix.count))
                healthRequests[name, default: 0] += 1
                let ok = !unhealthy.contains(name)
                return #"{"success":true,"data":{"healthy":\#(ok),"provider":"\#(name)","status":"active"}}"#
            }
            return nil  // includes /events: no push channel, the engine polls
        }
        let payload = Array((body ?? "not found").utf8)
        let head = "HTTP/1.1 \(body != nil ? "200 OK" : "404 Not Found")\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n"
            + "Connection: close\r\n\r\n"
        let bytes = Array(head.utf8) + payload
        var sent = 0
        while sent < bytes.count {
            // The engine may drop a check it no longer needs: a failed write just ends this.
            let n = bytes[sent...].withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}

extension Array where Element: Equatable {
    func ends(with suffix: [Element]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
    }
}

/// Every adapter call, in order, as "provider method streamId".
final class Journal: Watched, @unchecked Sendable {
    private(set) var calls = [String]()
    private(set) var cancelled = [String]()

    func record(_ call: String) { locked { calls.append(call); cond.broadcast() } }
    func recordCancelled(_ call: String) { locked { cancelled.append(call); cond.broadcast() } }
    func count(_ call: String) -> Int { locked { calls.filter { $0 == call }.count } }
    func count(containing part: String) -> Int { locked { calls.filter { $0.contains(part) }.count } }
}

/// A one-shot gate a test opens; waiting on it ignores task cancellation (as an SDK call that
/// cannot be interrupted would).
final class Gate: Watched, @unchecked Sendable {
    private var open = false
    func release() { locked { open = true; cond.broadcast() } }
    func wait() async {
        _ = await until(3600) { self.open }
    }
}

/// What one adapter call does, in order of calls; calls past the end of a script succeed.
enum Step {
    case fail(ProviderError)
    /// A Swift error that is not a ProviderError.
    case bug(String)
    /// Never returns; records its cancellation.
    case hang
    /// Returns (successfully) once the gate opens, whatever happens to the calling task.
    case gate(Gate)
}

struct SdkBug: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}

/// An adapter with async methods whose behaviour is scripted per method. It implements neither
/// `probe` nor `supportsParallelSessions`: the package's defaults serve.
final class ScriptedAdapter: ProviderAdapter, @unchecked Sendable {
    let name: String
    let journal: Journal
    private var script: [String: [Step]]

    init(_ name: String, _ journal: Journal, _ script: [String: [Step]] = [:]) {
        self.name = name
        self.journal = journal
        self.script = script
    }

    private func next(_ method: String) -> Step? {
        journal.locked {
            guard var steps = script[method], !steps.isEmpty else { return nil }
            let step = steps.removeFirst()
            script[method] = steps
            return step
        }
    }

    private func call(_ method: String, _ id: String) async throws {
        journal.record("\(name) \(method) \(id)")
        guard let step = next(method) else { return }
        switch step {
        case .fail(let error):
            try? await Task.sleep(nanoseconds: 1_000_000)  // a real suspension, as an SDK call has
            throw error
        case .bug(let text):
            throw SdkBug(text: text)
        case .hang:
            do {
                try await Task.sleep(nanoseconds: 3_600_000_000_000)
            } catch {
                journal.recordCancelled("\(name) \(method) \(id)")
                throw error
            }
        case .gate(let gate):
            await gate.wait()
        }
    }

    func initialize(provider: ProviderInfo) async throws { try await call("initialize", provider.name) }
    func startStream(streamId: String) async throws { try await call("start", streamId) }
    func joinStream(streamId: String) async throws { try await call("join", streamId) }
    func leaveStream(streamId: String) async throws { try await call("leave", streamId) }
}

/// Collects every event delivered to the listener.
final class Recorder: Watched, EventListener, @unchecked Sendable {
    private(set) var events = [StreamEvent]()

    func onEvent(event: StreamEvent) { locked { events.append(event); cond.broadcast() } }

    /// Waits for the first event whose kind `match` maps to a value, and returns that value.
    func expect<T>(
        _ what: String, file: StaticString = #filePath, line: UInt = #line,
        _ match: @escaping (EventKind) -> T?
    ) async -> T? {
        let found = await until { self.events.contains { match($0.kind) != nil } }
        XCTAssertTrue(found, "no \(what) within \(waitSeconds) s; saw \(locked { events.map(\.kind) })",
                      file: file, line: line)
        return locked { events.lazy.compactMap { match($0.kind) }.first }
    }
}
