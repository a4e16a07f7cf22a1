// Swift habits on top of the generated bindings (Streamguard.swift): task cancellation of a start
// or join, events as an AsyncStream, and defaults for the adapter methods most SDKs do not need.

import Foundation

extension StreamingProviderManager {
    /// Go live as publisher of `streamId`, with retries and failover; returns the session once it
    /// is live (starting a live session again returns it unchanged).
    ///
    /// Cancellable: cancelling the calling task cancels the start as `endStream` would (a
    /// provider that comes up late is left) and throws `CancellationError`. Throws
    /// `StreamguardError` (`AllAttemptsFailed`, `NoCapacity`, `ShutDown`...) otherwise.
    public func startStream(streamId: String) async throws -> SessionInfo {
        try await Self.cancellable { token in
            try await self.startStreamWith(streamId: streamId, cancel: token)
        }
    }

    /// Watch `streamId` as a viewer, with retries and failover. Cancellable like `startStream`.
    public func joinStream(streamId: String) async throws -> SessionInfo {
        try await Self.cancellable { token in
            try await self.joinStreamWith(streamId: streamId, cancel: token)
        }
    }

    /// UniFFI's Swift code never cancels an async Rust call, so the call gets a token that a task
    /// cancellation handler cancels. A token cancelled before the call starts makes it do nothing.
    private static func cancellable(
        _ call: (CancelToken) async throws -> SessionInfo
    ) async throws -> SessionInfo {
        let token = CancelToken()
        do {
            return try await withTaskCancellationHandler {
                try await call(token)
            } onCancel: {
                token.cancel()
            }
        } catch StreamguardError.Cancelled where Task.isCancelled {
            throw CancellationError()
        }
    }

    /// Every event from this call on, in order, until the consuming task is cancelled, the
    /// stream is dropped or the manager shuts down (events emitted before the shutdown are
    /// delivered first). Subscribes before returning, so no event emitted after this call is
    /// missed. Events are read on demand: a consumer that falls more than `eventBuffer` events
    /// behind loses the oldest, as a listener does.
    public func events() -> AsyncStream<StreamEvent> {
        let subscription = subscribe()
        return AsyncStream(
            unfolding: { await subscription.next() },
            onCancel: { subscription.close() }
        )
    }
}

extension ProviderAdapter {
    /// Default: no local health check (only the registry's health endpoint is used).
    public func probe() async throws {
        throw ProviderError.NotSupported(detail: "probe")
    }

    /// Default: the stream cannot run on this provider and another one at once.
    public func supportsParallelSessions() -> Bool {
        false
    }

    /// Default: the SDK cannot change a stream's quality (the engine never asks again).
    public func setQuality(streamId: String, level: QualityLevel) async throws {
        throw ProviderError.NotSupported(detail: "set_quality")
    }
}
