// What Kotlin users reach for first: withTimeout/scope cancellation cancels a start, events as a
// cold Flow, and use {} releasing a manager (bindings/kotlin/StreamguardKotlin.kt).
package io.streamguard.tests

import io.streamguard.BaseProviderAdapter
import io.streamguard.EventKind
import io.streamguard.EventListener
import io.streamguard.StreamEvent
import io.streamguard.ManagerConfig
import io.streamguard.ProviderInfo
import io.streamguard.SessionState
import io.streamguard.StreamingProviderManager
import io.streamguard.events
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Test
import java.util.concurrent.CountDownLatch
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class HabitsTest : Scenario() {
    private fun states(id: String) = recorder.lock.withLockOf {
        recorder.events.map { it.kind }.filterIsInstance<EventKind.SessionStateChanged>()
            .filter { it.streamId == id }.map { it.to }
    }

    @Test
    fun withTimeoutCancelsTheStartAndALateProviderIsLeft() = runBlocking {
        val gate = CountDownLatch(1)
        manager(mapOf("agora" to mutableMapOf("start" to mutableListOf<Any>(gate)))).use { m ->
            m.addListener(recorder).use {
                assertFailsWith<TimeoutCancellationException> { withTimeout(300) { m.startStream("s") } }
                // Cancelled as endStream would: without it the engine waits for agora and goes live.
                assertTrue(recorder.waitFor { SessionState.ENDED in states("s") }, "${states("s")}")
                gate.countDown() // the SDK call comes back late, successfully: that provider is left
                assertTrue(journal.waitFor { journal.count("agora leave s") == 1 }, "${journal.calls}")
                assertTrue(SessionState.LIVE !in states("s"))
                assertEquals(0, journal.count("zegocloud start s"))
                // Scope cancellation does the same for joinStream.
                val join = async(start = CoroutineStart.UNDISPATCHED) { m.joinStream("v") }
                join.cancel()
                assertFailsWith<kotlinx.coroutines.CancellationException> { join.await() }
                m.shutdown()
            }
        }
    }

    @Test
    fun eventsFlowSeesEveryEventAndCompletesAtShutdown() = runBlocking {
        manager().use { m ->
            // Collection starts (and subscribes) before the start: nothing is missed.
            val states = async(start = CoroutineStart.UNDISPATCHED) {
                m.events().map { it.kind }.filterIsInstance<EventKind.SessionStateChanged>()
                    .map { it.to }.toList()
            }
            m.startStream("s")
            m.shutdown()
            val seen = states.await() // the flow completes after the shutdown's events
            assertEquals(SessionState.CONNECTING, seen.first(), "$seen")
            assertEquals(listOf(SessionState.LIVE, SessionState.ENDED), seen.takeLast(2), "$seen")
        }
    }

    @Test
    fun cancellingTheCollectorEndsTheFlow() = runBlocking {
        manager().use { m ->
            m.startStream("s")
            val collector = launch(start = CoroutineStart.UNDISPATCHED) { m.events().collect {} }
            collector.cancel()
            withTimeout(WAIT_MS) { collector.join() }
            assertTrue(collector.isCancelled)
            m.shutdown()
        }
    }

    @Test
    fun aListenerThatThrowsIsCountedAndKeepsReceiving() = runBlocking {
        val failing = object : EventListener {
            override fun onEvent(event: StreamEvent) {
                recorder.onEvent(event)
                throw IllegalStateException("listener bug")
            }
        }
        manager().use { m ->
            m.addListener(failing).use { handle ->
                m.startStream("s")
                recorder.expect<EventKind.SessionStateChanged> { it.to == SessionState.LIVE }
                // shutdown() returns once every listener call for the events so far has returned.
                m.shutdown()
                assertEquals(recorder.events.size.toULong(), handle.failures())
                assertTrue(handle.failures() >= 2uL)
            }
        }
    }

    @Test
    fun useWithoutShutdownLeavesProviders() = runBlocking {
        manager().use { m -> m.startStream("s") }
        assertTrue(journal.waitFor { journal.count("agora leave s") == 1 }, "${journal.calls}")
    }

    @Test
    fun anAdapterImplementsOnlyWhatItUses() = runBlocking {
        class Minimal : BaseProviderAdapter() {
            override suspend fun initialize(provider: ProviderInfo) {}
            override suspend fun startStream(streamId: String) {}
            override suspend fun joinStream(streamId: String) {}
            override suspend fun leaveStream(streamId: String) {}
        }
        StreamingProviderManager(ManagerConfig(baseUrl = registry.baseUrl)).use { m ->
            m.registerAdapter("agora", Minimal())
            assertEquals("agora", m.startStream("s").provider)
            m.shutdown()
        }
    }
}

private inline fun <T> java.util.concurrent.locks.ReentrantLock.withLockOf(body: () -> T): T {
    lock()
    try {
        return body()
    } finally {
        unlock()
    }
}
