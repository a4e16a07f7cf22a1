// Kotlin habits on top of the generated bindings (io/streamguard/streamguard.kt): events as a
// cold Flow, and an adapter base class with the engine's defaults. Compiled with the generated
// file (see bindings/README.md, "Android (Kotlin)").
//
// Cancellation: startStream and joinStream (and refreshProviders) are cancellable with
// withTimeout or by cancelling the calling scope: the operation is cancelled as endStream would,
// and a provider that comes up late is left. endStream and shutdown run to completion.
// Lifetime: use {} (close()) releases the manager; the engine then leaves live providers in the
// background. Call shutdown() first to wait for that.
package io.streamguard

import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow

/**
 * Every event of this manager as a cold [Flow]: each collector subscribes when it starts
 * collecting and misses no event emitted after that. The flow completes when the manager shuts
 * down (after the events emitted before) and stops when the collector's scope is cancelled. A
 * collector more than `eventBuffer` events behind loses the oldest, as a listener does.
 */
fun StreamingProviderManager.events(): Flow<StreamEvent> = flow {
    subscribe().use { subscription ->
        while (true) {
            emit(subscription.next() ?: break)
        }
    }
}

/**
 * A [ProviderAdapter] with the engine's defaults for the two optional methods: no local
 * [probe] (only the registry's health endpoint is used) and no parallel sessions.
 */
abstract class BaseProviderAdapter : ProviderAdapter {
    override suspend fun probe(): Unit = throw ProviderException.NotSupported("probe")

    override fun supportsParallelSessions(): Boolean = false

    /** Default: the SDK cannot change a stream's quality (the engine never asks again). */
    override suspend fun setQuality(streamId: String, level: QualityLevel): Unit =
        throw ProviderException.NotSupported("set_quality")
}
