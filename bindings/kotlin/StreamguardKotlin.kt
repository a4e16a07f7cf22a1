// Kotlin habits on top of the generated bindings (io/streamguard/streamguard.kt): events as a
// cold Flow, and an adapter base class with the engine's defaults. Compiled with the generated
// file (see bindings/README.md, "Android (Kotlin)").
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
}
