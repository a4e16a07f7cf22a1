// End-to-end scenarios of the Swift package in real time: the generated bindings plus the
// hand-written glue over the Rust library, adapters written with async methods, and a real HTTP
// registry on loopback (the same core scenarios as tests/python and tests/kotlin).

import Foundation
import Streamguard
import XCTest

final class StreamguardTests: XCTestCase {
    var registry: Registry!
    var journal: Journal!
    var recorder: Recorder!

    override func setUp() {
        registry = Registry()
        journal = Journal()
        recorder = Recorder()
    }

    override func tearDown() {
        registry.close()
    }

    func config(adapterTimeoutMs: UInt64 = 3000) -> ManagerConfig {
        ManagerConfig(
            baseUrl: registry.baseUrl, healthCheckIntervalMs: 300, suspectRecheckDelayMs: 100,
            adapterTimeoutMs: adapterTimeoutMs, backoffBaseMs: 20, backoffCapMs: 50,
            providerRefreshIntervalMs: 300)
    }

    func manager(
        _ scripts: [String: [String: [Step]]] = [:], config: ManagerConfig? = nil
    ) throws -> StreamingProviderManager {
        let m = try StreamingProviderManager(config: config ?? self.config())
        for name in ["agora", "zegocloud", "webrtc"] {
            try m.registerAdapter(name: name, adapter: ScriptedAdapter(name, journal, scripts[name] ?? [:]))
        }
        return m
    }

    func testStartFailsOverAfterTwoTransientErrors() async throws {
        let m = try manager(["agora": ["start": [.fail(.Timeout(detail: "join timed out")),
                                                .fail(.Timeout(detail: "again"))]]])
        let handle = m.addListener(listener: recorder)
        let session = try await m.startStream(streamId: "stream-42")
        XCTAssertEqual(session.provider, "zegocloud")
        XCTAssertEqual(session.state, .live)
        XCTAssertEqual(session.attempts, 3)
        XCTAssertEqual(journal.count("agora start stream-42"), 2)
        let failover = await recorder.expect("Failover") {
            if case let .failover(_, from, to, reason) = $0 { return (from, to, reason) } else { return nil }
        }
        XCTAssertEqual(failover?.0, "agora")
        XCTAssertEqual(failover?.1, "zegocloud")
        XCTAssertEqual(failover?.2, .retriesExhausted)
        let failed = await recorder.expect("AttemptFailed #2") {
            if case let .attemptFailed(_, _, attempt, _, kind, _, _) = $0, attempt == 2 { return kind } else { return nil }
        }
        XCTAssertEqual(failed, .timeout)
        let stats = Dictionary(uniqueKeysWithValues: m.providerStats().map { ($0.provider, $0) })
        XCTAssertEqual(stats["agora"]?.failures, 2)
        XCTAssertEqual(stats["zegocloud"]?.successes, 1)
        try await m.shutdown()
        handle.close()
    }

    func testAllProvidersDownFailsAfterExactlyThreeAttempts() async throws {
        let down: [String: [Step]] = ["start": Array(repeating: .fail(.Unavailable(detail: "down")), count: 5)]
        let m = try manager(["agora": down, "zegocloud": down, "webrtc": down])
        do {
            _ = try await m.startStream(streamId: "s")
            XCTFail("started on a dead provider")
        } catch let StreamguardError.AllAttemptsFailed(attempts) {
            XCTAssertEqual(attempts.map(\.provider), ["agora", "agora", "zegocloud"])
            XCTAssertTrue(attempts.allSatisfy { $0.kind == .unavailable })
        }
        XCTAssertEqual(m.session(streamId: "s")?.state, .failed)
        // Nothing keeps retrying.
        let more = await journal.until(0.5) { [self] in journal.count(containing: " start ") > 3 }
        XCTAssertFalse(more, "a fourth attempt was made: \(journal.calls)")
        try await m.shutdown()
    }

    func testHealthFailureMigratesALiveStream() async throws {
        let m = try manager()
        let handle = m.addListener(listener: recorder)
        let live = try await m.startStream(streamId: "s")
        XCTAssertEqual(live.provider, "agora")
        let ok2 = await registry.until { [self] in registry.healthCount("agora") >= 1 }
        XCTAssertTrue(ok2)
        registry.setUnhealthy("agora")
        let failures = await recorder.expect("agora unhealthy") {
            if case let .healthChanged("agora", _, .unhealthy, failures, _) = $0 { return failures } else { return nil }
        }
        XCTAssertEqual(failures, 3)
        let to = await recorder.expect("MigrationFinished") {
            if case let .migrationFinished("s", _, to, _, _, _) = $0 { return to } else { return nil }
        }
        XCTAssertEqual(to, "zegocloud")
        XCTAssertEqual(journal.count("agora leave s"), 1)
        XCTAssertEqual(m.session(streamId: "s")?.provider, "zegocloud")
        let reason = await recorder.expect("MigrationStarted") {
            if case let .migrationStarted(_, _, reason, _) = $0 { return reason } else { return nil }
        }
        XCTAssertEqual(reason, .healthCheckFailed)
        try await m.shutdown()
        handle.close()
    }

    func testRegistryListChangeMigrates() async throws {
        let m = try manager()
        let handle = m.addListener(listener: recorder)
        _ = try await m.startStream(streamId: "s")
        registry.setProviders(
            #"{"name":"agora","isActive":false,"priority":1,"config":{}}"#,
            #"{"name":"zegocloud","isActive":true,"priority":2,"config":{}}"#)
        let reason = await recorder.expect("MigrationStarted") {
            if case let .migrationStarted("s", _, reason, _) = $0 { return reason } else { return nil }
        }
        XCTAssertEqual(reason, .providerDisabled)
        let to = await recorder.expect("MigrationFinished") {
            if case let .migrationFinished("s", _, to, _, _, _) = $0 { return to } else { return nil }
        }
        XCTAssertEqual(to, "zegocloud")
        let active = await recorder.expect("ProviderListChanged") {
            if case let .providerListChanged(active) = $0, active == ["zegocloud"] { return active } else { return nil }
        }
        XCTAssertEqual(active, ["zegocloud"])
        XCTAssertEqual(m.providers().filter(\.isActive).map(\.name), ["zegocloud"])
        try await m.shutdown()
        handle.close()
    }

    func testEndStreamStopsHealthPolling() async throws {
        let m = try manager()
        _ = try await m.startStream(streamId: "s")
        let ok3 = await registry.until { [self] in registry.healthCount("agora") >= 2 }
        XCTAssertTrue(ok3)
        try await m.endStream(streamId: "s")
        XCTAssertEqual(journal.count("agora leave s"), 1)
        XCTAssertEqual(m.session(streamId: "s")?.state, .ended)
        // One check already on the wire may still land; no other follows (the interval is
        // 300 ms, so four would have come in this window).
        let atEnd = registry.healthCount("agora")
        let ok4 = await registry.until(1.2) { [self] in registry.healthCount("agora") > atEnd + 1 }
        XCTAssertFalse(ok4,
                       "health checks continued after endStream")
        do {
            try await m.endStream(streamId: "nope")
            XCTFail("ended an unknown stream")
        } catch StreamguardError.UnknownSession {}
        try await m.shutdown()
    }

    func testShutdownLeavesEveryProviderAndStopsEveryTask() async throws {
        let m = try manager(["agora": ["join": [.fail(.Unauthorized(detail: "bad token"))]]])
        let handle = m.addListener(listener: recorder)
        let publisher = try await m.startStream(streamId: "pub")
        XCTAssertEqual(publisher.provider, "agora")
        let viewer = try await m.joinStream(streamId: "view")
        XCTAssertEqual(viewer.provider, "zegocloud")
        try await m.shutdown()
        XCTAssertEqual(journal.count("agora leave pub"), 1)
        XCTAssertEqual(journal.count("zegocloud leave view"), 1)
        XCTAssertEqual(m.taskCount(), 0)
        for id in ["pub", "view"] {
            _ = await recorder.expect("\(id) ended") {
                if case .sessionStateChanged(id, _, .ended, _) = $0 { return true } else { return nil }
            }
        }
        do {
            _ = try await m.startStream(streamId: "again")
            XCTFail("started after shutdown")
        } catch StreamguardError.ShutDown {}
        handle.close()
    }

    func testUnexpectedSwiftErrorFailsOverAtOnce() async throws {
        let m = try manager(["agora": ["start": [.bug("sdk bug")]]])
        let handle = m.addListener(listener: recorder)
        let session = try await m.startStream(streamId: "s")
        XCTAssertEqual(session.provider, "zegocloud")
        XCTAssertEqual(journal.count("agora start s"), 1)
        let failed = await recorder.expect("AttemptFailed on agora") {
            if case let .attemptFailed(_, "agora", _, _, kind, detail, _) = $0 { return (kind, detail) } else { return nil }
        }
        XCTAssertEqual(failed?.0, .internal)
        XCTAssertTrue(failed?.1.contains("sdk bug") ?? false, failed?.1 ?? "")
        try await m.shutdown()
        handle.close()
    }

    func testHangingAdapterTimesOutAndItsTaskIsCancelled() async throws {
        let m = try manager(["agora": ["start": [.hang, .hang]]], config: config(adapterTimeoutMs: 250))
        let session = try await m.startStream(streamId: "s")
        XCTAssertEqual(session.provider, "zegocloud")
        let ok5 = await journal.until { [self] in journal.cancelled.count == 2 }
        XCTAssertTrue(ok5, "cancelled: \(journal.cancelled)")
        try await m.shutdown()
    }

    func testAFullProviderThrowsNoCapacityUntilItsSlotIsFreed() async throws {
        registry.setProviders(#"{"name":"agora","isActive":true,"priority":1,"config":{},"maxStreams":1}"#)
        let config = config()
        XCTAssertFalse(config.waitForCapacity)
        let m = try manager(config: config)
        let first = try await m.startStream(streamId: "a")
        XCTAssertEqual(first.provider, "agora")
        do {
            _ = try await m.startStream(streamId: "b")
            XCTFail("started beyond maxStreams")
        } catch let StreamguardError.NoCapacity(providers, waitedMs, attempts) {
            XCTAssertEqual(providers, ["agora"])
            XCTAssertEqual(waitedMs, 0)
            XCTAssertTrue(attempts.isEmpty)
        }
        XCTAssertEqual(journal.count("agora start b"), 0)
        XCTAssertEqual(m.session(streamId: "b")?.state, .failed)
        try await m.endStream(streamId: "a")
        let second = try await m.startStream(streamId: "b")
        XCTAssertEqual(second.provider, "agora")
        XCTAssertEqual(second.state, .live)
        // Capacity settings are validated.
        XCTAssertThrowsError(try StreamingProviderManager(
            config: ManagerConfig(baseUrl: registry.baseUrl, maxTotalStreams: 0))) { error in
            guard case let StreamguardError.InvalidConfig(detail) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertTrue(detail.contains("max_total_streams"), detail)
        }
        try await m.shutdown()
    }

    func testConfigDefaultsAndRedactedDescription() throws {
        XCTAssertEqual(defaultManagerConfig(baseUrl: registry.baseUrl), ManagerConfig(baseUrl: registry.baseUrl))
        let shown = ManagerConfig(baseUrl: registry.baseUrl, authToken: "s3cr3t-token").description
        XCTAssertFalse(shown.contains("s3cr3t"), shown)
        XCTAssertTrue(shown.contains("redacted"), shown)
    }

    // MARK: Swift habits (the package's StreamguardSwift.swift)

    /// Cancelling the task that awaits startStream cancels the start (without the glue the
    /// generated call ignores cancellation: it would wait for the gate and go live), and the
    /// provider that comes up late is left.
    func testCancellingTheTaskCancelsTheStartAndLeavesALateProvider() async throws {
        let gate = Gate()
        let m = try manager(["agora": ["start": [.gate(gate)]]])
        let outcome = Journal()  // records how the start ended
        let start = Task {
            do {
                _ = try await m.startStream(streamId: "s")
                outcome.record("live")
            } catch is CancellationError {
                outcome.record("cancelled")
            } catch {
                outcome.record("error \(error)")
            }
        }
        let ok6 = await journal.until { [self] in journal.count("agora start s") == 1 }
        XCTAssertTrue(ok6)
        start.cancel()
        let ended = await outcome.until { !outcome.calls.isEmpty }
        gate.release()  // the SDK call comes back late, successfully
        XCTAssertTrue(ended, "startStream kept waiting after its task was cancelled")
        XCTAssertEqual(outcome.calls, ["cancelled"])
        let ok7 = await journal.until { [self] in journal.count("agora leave s") == 1 }
        XCTAssertTrue(ok7, "late provider not left: \(journal.calls)")
        XCTAssertNotEqual(m.session(streamId: "s")?.state, .live)
        XCTAssertEqual(journal.count(containing: "zegocloud start"), 0)
        // A task cancelled before it calls starts nothing.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await m.joinStream(streamId: "early")
        }
        do {
            _ = try await early.value
            XCTFail("joined from a cancelled task")
        } catch is CancellationError {}
        XCTAssertEqual(journal.count(containing: " join early"), 0)
        try await m.shutdown()
    }

    /// events() is an AsyncStream that sees every event from the call on and ends when the
    /// manager shuts down.
    func testEventsAsAsyncStreamEndWithShutdown() async throws {
        let m = try manager()
        let events = m.events()  // subscribed here: nothing after this line is missed
        _ = try await m.startStream(streamId: "s")
        try await m.shutdown()
        var states = [SessionState]()
        for await event in events {  // ends after the shutdown's events
            if case let .sessionStateChanged("s", _, to, _) = event.kind { states.append(to) }
        }
        XCTAssertEqual(states.suffix(2), [.live, .ended], "\(states)")
    }

    /// Cancelling the task that iterates events() ends the iteration at once, even with no
    /// further event coming.
    func testCancellingTheConsumerEndsTheEventStream() async throws {
        let m = try manager()
        let handle = m.addListener(listener: recorder)
        _ = try await m.startStream(streamId: "s")
        // The last event for a while: agora's first passing check.
        _ = await recorder.expect("agora healthy") {
            if case .healthChanged("agora", _, .healthy, _, _) = $0 { return true } else { return nil }
        }
        let events = m.events()
        let finished = Journal()
        let consumer = Task {
            for await _ in events {}
            finished.record("done")
        }
        consumer.cancel()
        let ok8 = await finished.until(5) { finished.count("done") == 1 }
        XCTAssertTrue(ok8, "the iteration kept waiting")
        try await m.shutdown()
        handle.close()
    }

    /// A listener that throws is counted at the boundary and keeps receiving events.
    func testAListenerThatThrowsIsCountedAndKeepsReceiving() async throws {
        final class Failing: EventListener, @unchecked Sendable {
            let recorder: Recorder
            init(_ recorder: Recorder) { self.recorder = recorder }
            func onEvent(event: StreamEvent) throws {
                recorder.onEvent(event: event)
                throw SdkBug(text: "listener bug")
            }
        }
        let m = try manager()
        let handle = m.addListener(listener: Failing(recorder))
        _ = try await m.startStream(streamId: "s")
        _ = await recorder.expect("live") {
            if case .sessionStateChanged(_, _, .live, _) = $0 { return true } else { return nil }
        }
        // shutdown() returns once every listener call for the events so far has returned.
        try await m.shutdown()
        XCTAssertEqual(handle.failures(), UInt64(recorder.events.count))
        XCTAssertGreaterThanOrEqual(handle.failures(), 2)
        handle.close()
    }

    /// A manager released without shutdown() (deinit) leaves its providers in the background
    /// and does not block the releasing thread.
    func testReleasingAManagerWithoutShutdownLeavesProviders() async throws {
        var m: StreamingProviderManager? = try manager()
        _ = try await m!.startStream(streamId: "s")
        m = nil
        let ok9 = await journal.until { [self] in journal.count("agora leave s") == 1 }
        XCTAssertTrue(ok9, "\(journal.calls)")
    }
}
