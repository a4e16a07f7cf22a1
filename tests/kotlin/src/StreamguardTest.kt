// End-to-end scenarios of the Kotlin bindings on the JVM (standing in for Android): the
// generated io.streamguard sources over JNA, adapters written with suspend funs, and a real
// HTTP registry on loopback. Every wait is bounded and waits on a condition.
package io.streamguard.tests

import com.sun.net.httpserver.HttpServer
import io.streamguard.EventKind
import io.streamguard.EventListener
import io.streamguard.FailoverReason
import io.streamguard.HealthStatus
import io.streamguard.ManagerConfig
import io.streamguard.ProviderAdapter
import io.streamguard.ProviderErrorKind
import io.streamguard.ProviderException
import io.streamguard.ProviderInfo
import io.streamguard.QualityLevel
import io.streamguard.SessionState
import io.streamguard.StreamEvent
import io.streamguard.StreamguardException
import io.streamguard.StreamingProviderManager
import io.streamguard.defaultManagerConfig
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.withContext
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Test
import java.net.InetSocketAddress
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

const val WAIT_MS = 10_000L

/** A lock and condition with a bounded wait for a predicate. */
open class Watched {
    val lock = ReentrantLock()
    private val cond = lock.newCondition()

    fun changed() = lock.withLock { cond.signalAll() }

    fun waitFor(timeoutMs: Long = WAIT_MS, predicate: () -> Boolean): Boolean = lock.withLock {
        var left = TimeUnit.MILLISECONDS.toNanos(timeoutMs)
        while (!predicate()) {
            if (left <= 0) return false
            left = cond.awaitNanos(left)
        }
        true
    }
}

/** The registry contract of README.md on 127.0.0.1, with a switch to mark providers unhealthy. */
class Registry : Watched() {
    val unhealthy = mutableSetOf<String>()
    /** The JSON objects of the provider list, comma-separated; see [setProviders]. */
    private var providers =
        """{"name":"agora","isActive":true,"priority":1,"config":{"appId":"a-1"}},""" +
            """{"name":"zegocloud","isActive":true,"priority":2,"config":{}},""" +
            """{"name":"webrtc","isActive":true,"priority":3,"config":{}}"""
    val healthRequests = mutableMapOf<String, Int>()
    private val server = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
    val baseUrl: String

    init {
        server.createContext("/api/streaming/providers") { ex ->
            val path = ex.requestURI.path
            val health = Regex("/api/streaming/providers/([^/]+)/health").matchEntire(path)
            val body = lock.withLock {
                when {
                    path == "/api/streaming/providers" ->
                        """{"success":true,"data":{"providers":[$providers]}}"""
                    health != null -> {
                        val name = health.groupValues[1]
                        healthRequests[name] = (healthRequests[name] ?: 0) + 1
                        val ok = name !in unhealthy
                        """{"success":true,"data":{"healthy":$ok,"provider":"$name","status":"active"}}"""
                    }
                    else -> null // includes /events: no push channel, the engine polls
                }
            }
            changed()
            val bytes = (body ?: "not found").toByteArray()
            try {
                ex.sendResponseHeaders(if (body != null) 200 else 404, bytes.size.toLong())
                ex.responseBody.use { it.write(bytes) }
            } catch (_: java.io.IOException) {
                // The engine dropped a check it no longer needs.
            }
        }
        server.start()
        baseUrl = "http://127.0.0.1:${server.address.port}/api"
    }

    fun setUnhealthy(name: String) = lock.withLock { unhealthy.add(name) }

    /** Serve these provider JSON objects from the next list request on. */
    fun setProviders(vararg json: String) = lock.withLock { providers = json.joinToString(",") }

    fun close() = server.stop(0)
}

/** Every adapter call, in order, as "provider method streamId". */
class Journal : Watched() {
    val calls = mutableListOf<String>()
    val cancelled = mutableListOf<String>()

    fun record(call: String) {
        lock.withLock { calls.add(call) }
        changed()
    }

    fun count(call: String) = lock.withLock { calls.count { it == call } }
}

/** Scripted failures per method: each call takes the next step ("hang", an exception, a
 *  CountDownLatch to wait for whatever happens to the call, or success once the script is used
 *  up). */
class ScriptedAdapter(
    private val name: String,
    private val journal: Journal,
    private val script: MutableMap<String, MutableList<Any>> = mutableMapOf(),
) : ProviderAdapter {
    private suspend fun call(method: String, id: String) {
        journal.record("$name $method $id")
        val step = script[method]?.removeFirstOrNull() ?: return
        if (step is CountDownLatch) {
            // An SDK call that cannot be interrupted: it returns once the test counts down.
            withContext(NonCancellable + Dispatchers.IO) { step.await(WAIT_MS, TimeUnit.MILLISECONDS) }
            return
        }
        if (step == "hang") {
            try {
                awaitCancellation()
            } catch (e: CancellationException) {
                journal.lock.withLock { journal.cancelled.add("$name $method $id") }
                journal.changed()
                throw e
            }
        }
        delay(1) // a real suspension point, as an SDK call would have
        throw step as Exception
    }

    override suspend fun initialize(provider: ProviderInfo) = call("initialize", provider.name)
    override suspend fun startStream(streamId: String) = call("start", streamId)
    override suspend fun joinStream(streamId: String) = call("join", streamId)
    override suspend fun leaveStream(streamId: String) = call("leave", streamId)
    override suspend fun probe() = throw ProviderException.NotSupported("probe")
    override suspend fun setQuality(streamId: String, level: QualityLevel) =
        throw ProviderException.NotSupported("set_quality")
    override fun supportsParallelSessions() = false
}

/** Collects every event delivered to the listener. */
class Recorder : Watched(), EventListener {
    val events = mutableListOf<StreamEvent>()

    override fun onEvent(event: StreamEvent) {
        lock.withLock { events.add(event) }
        changed()
    }

    inline fun <reified T : EventKind> expect(crossinline match: (T) -> Boolean = { true }): T {
        val found = waitFor { events.any { it.kind is T && match(it.kind as T) } }
        assertTrue(found, "no ${T::class.simpleName} within ${WAIT_MS}ms; saw ${lock.withLock { events.map { it.kind } }}")
        return lock.withLock { events.map { it.kind }.filterIsInstance<T>().first { match(it) } }
    }
}

/** Short intervals so every scenario runs in real time within a second or two. */
fun fastConfig(baseUrl: String, adapterTimeoutMs: ULong = 3000uL) = ManagerConfig(
    baseUrl = baseUrl,
    healthCheckIntervalMs = 300uL,
    suspectRecheckDelayMs = 100uL,
    providerRefreshIntervalMs = 300uL,
    backoffBaseMs = 20uL,
    backoffCapMs = 50uL,
    adapterTimeoutMs = adapterTimeoutMs,
)

/** A registry, a journal and a recorder per test, and managers with scripted adapters. */
open class Scenario {
    protected val registry = Registry()
    protected val journal = Journal()
    protected val recorder = Recorder()

    @AfterEach
    fun stop() = registry.close()

    protected fun config(adapterTimeoutMs: ULong = 3000uL) = fastConfig(registry.baseUrl, adapterTimeoutMs)

    protected fun manager(
        scripts: Map<String, MutableMap<String, MutableList<Any>>> = emptyMap(),
        config: ManagerConfig = config(),
    ): StreamingProviderManager {
        val m = StreamingProviderManager(config)
        for (name in listOf("agora", "zegocloud", "webrtc")) {
            m.registerAdapter(name, ScriptedAdapter(name, journal, scripts[name] ?: mutableMapOf()))
        }
        return m
    }
}

class StreamguardTest : Scenario() {
    @Test
    fun startFailsOverAfterTwoTransientErrors() = runBlocking {
        val timeouts = mutableListOf<Any>(ProviderException.Timeout("join timed out"), ProviderException.Timeout("again"))
        manager(mapOf("agora" to mutableMapOf("start" to timeouts))).use { m ->
            m.addListener(recorder).use {
                val session = m.startStream("stream-42")
                assertEquals("zegocloud", session.provider)
                assertEquals(SessionState.LIVE, session.state)
                assertEquals(3u, session.attempts)
                assertEquals(2, journal.count("agora start stream-42"))
                val failover = recorder.expect<EventKind.Failover>()
                assertEquals("agora" to "zegocloud", failover.from to failover.to)
                assertEquals(FailoverReason.RETRIES_EXHAUSTED, failover.reason)
                val failed = recorder.expect<EventKind.AttemptFailed> { it.attempt == 2u }
                assertEquals(ProviderErrorKind.TIMEOUT, failed.errorKind)
                val stats = m.providerStats().associateBy { it.provider }
                assertEquals(2uL, stats.getValue("agora").failures)
                assertEquals(1uL, stats.getValue("zegocloud").successes)
                m.shutdown()
            }
        }
    }

    @Test
    fun allProvidersDownFailsAfterExactlyThreeAttempts() = runBlocking {
        fun down() = mutableMapOf("start" to MutableList<Any>(5) { ProviderException.Unavailable("down") })
        manager(mapOf("agora" to down(), "zegocloud" to down(), "webrtc" to down())).use { m ->
            val e = assertFailsWith<StreamguardException.AllAttemptsFailed> { m.startStream("s") }
            assertEquals(listOf("agora", "agora", "zegocloud"), e.attempts.map { it.provider })
            assertTrue(e.attempts.all { it.kind == ProviderErrorKind.UNAVAILABLE })
            assertEquals(SessionState.FAILED, m.session("s")?.state)
            // Nothing keeps retrying.
            val more = journal.waitFor(500) { journal.calls.count { it.contains(" start ") } > 3 }
            assertTrue(!more, "a fourth attempt was made: ${journal.calls}")
            m.shutdown()
        }
    }

    @Test
    fun healthFailureMigratesALiveStream() = runBlocking {
        manager().use { m ->
            m.addListener(recorder).use {
                assertEquals("agora", m.startStream("s").provider)
                assertTrue(registry.waitFor { (registry.healthRequests["agora"] ?: 0) >= 1 })
                registry.setUnhealthy("agora")
                val down = recorder.expect<EventKind.HealthChanged> { it.provider == "agora" && it.to == HealthStatus.UNHEALTHY }
                assertEquals(3u, down.consecutiveFailures)
                val done = recorder.expect<EventKind.MigrationFinished> { it.streamId == "s" }
                assertEquals("zegocloud", done.to)
                assertEquals(1, journal.count("agora leave s"))
                assertEquals("zegocloud", m.session("s")?.provider)
                val started = recorder.expect<EventKind.MigrationStarted>()
                assertEquals(FailoverReason.HEALTH_CHECK_FAILED, started.reason)
                m.shutdown()
            }
        }
    }

    @Test
    fun shutdownLeavesEveryProviderAndStopsEveryTask() = runBlocking {
        val unauthorized = mutableListOf<Any>(ProviderException.Unauthorized("bad token"))
        val m = manager(mapOf("agora" to mutableMapOf("join" to unauthorized)))
        val handle = m.addListener(recorder)
        assertEquals("agora", m.startStream("pub").provider)
        assertEquals("zegocloud", m.joinStream("view").provider)
        m.shutdown()
        assertEquals(1, journal.count("agora leave pub"))
        assertEquals(1, journal.count("zegocloud leave view"))
        assertEquals(0uL, m.taskCount())
        recorder.expect<EventKind.SessionStateChanged> { it.streamId == "pub" && it.to == SessionState.ENDED }
        recorder.expect<EventKind.SessionStateChanged> { it.streamId == "view" && it.to == SessionState.ENDED }
        assertFailsWith<StreamguardException.ShutDown> { m.startStream("again") }
        handle.close()
        m.close()
    }

    @Test
    fun unexpectedKotlinExceptionFailsOverAtOnce() = runBlocking {
        val bug = mutableListOf<Any>(IllegalStateException("sdk bug"))
        manager(mapOf("agora" to mutableMapOf("start" to bug))).use { m ->
            m.addListener(recorder).use {
                assertEquals("zegocloud", m.startStream("s").provider)
                assertEquals(1, journal.count("agora start s"))
                val failed = recorder.expect<EventKind.AttemptFailed> { it.provider == "agora" }
                assertEquals(ProviderErrorKind.INTERNAL, failed.errorKind)
                assertTrue("sdk bug" in failed.errorDetail, failed.errorDetail)
                m.shutdown()
            }
        }
    }

    @Test
    fun hangingAdapterTimesOutAndItsCoroutineIsCancelled() = runBlocking {
        val hangs = mutableListOf<Any>("hang", "hang")
        manager(mapOf("agora" to mutableMapOf("start" to hangs)), config(adapterTimeoutMs = 250uL)).use { m ->
            assertEquals("zegocloud", m.startStream("s").provider)
            assertTrue(journal.waitFor { journal.cancelled.size == 2 }, "cancelled: ${journal.cancelled}")
            m.shutdown()
        }
    }

    @Test
    fun recordErrorFromAnSdkCallbackMovesTheSession() = runBlocking {
        manager().use { m ->
            m.addListener(recorder).use {
                m.startStream("s")
                m.recordError("s", ProviderException.QuotaExceeded("quota gone"))
                val done = recorder.expect<EventKind.MigrationFinished> { it.streamId == "s" }
                assertEquals("zegocloud", done.to)
                assertFailsWith<StreamguardException.UnknownSession> {
                    m.recordError("nope", ProviderException.Network("x"))
                }
                m.shutdown()
            }
        }
    }

    @Test
    fun configDefaultsMatchTheEngineAndValidationThrows() {
        assertEquals(defaultManagerConfig(registry.baseUrl), ManagerConfig(baseUrl = registry.baseUrl))
        val shown = ManagerConfig(baseUrl = registry.baseUrl, authToken = "s3cr3t-token").toString()
        assertTrue("s3cr3t" !in shown && "redacted" in shown, shown)
        assertTrue("max_total_streams: None" in shown && "capacity_lease_ttl_ms: 60000" in shown, shown)
        val e = assertFailsWith<StreamguardException.InvalidConfig> {
            StreamingProviderManager(ManagerConfig(baseUrl = registry.baseUrl, maxAttempts = 0u))
        }
        assertTrue("max_attempts" in e.detail, e.detail)
    }

    @Test
    fun aFullProviderThrowsNoCapacityUntilItsSlotIsFreed() = runBlocking {
        // One provider, one stream slot (the registry's `maxStreams`).
        registry.setProviders("""{"name":"agora","isActive":true,"priority":1,"config":{},"maxStreams":1}""")
        // Default capacity settings: waitForCapacity is off, so a full provider fails at once.
        val config = config()
        assertEquals(false, config.waitForCapacity)
        manager(config = config).use { m ->
            assertEquals("agora", m.startStream("a").provider)
            val e = assertFailsWith<StreamguardException.NoCapacity> { m.startStream("b") }
            assertEquals(listOf("agora"), e.providers)
            assertEquals(0uL, e.waitedMs)
            assertTrue(e.attempts.isEmpty(), "${e.attempts}")
            assertEquals(0, journal.count("agora start b"), "no adapter call for b")
            assertEquals(SessionState.FAILED, m.session("b")?.state)
            m.endStream("a")
            val b = m.startStream("b")
            assertEquals("agora" to SessionState.LIVE, b.provider to b.state)
            assertEquals(1, journal.count("agora start b"))
            m.shutdown()
        }
    }

    @Test
    fun capacitySettingsAreValidated() {
        val zero = assertFailsWith<StreamguardException.InvalidConfig> {
            StreamingProviderManager(ManagerConfig(baseUrl = registry.baseUrl, maxTotalStreams = 0u))
        }
        assertTrue("max_total_streams" in zero.detail, zero.detail)
        val ttl = assertFailsWith<StreamguardException.InvalidConfig> {
            StreamingProviderManager(ManagerConfig(baseUrl = registry.baseUrl, capacityLeaseTtlMs = 5uL))
        }
        assertTrue("capacity_lease_ttl" in ttl.detail, ttl.detail)
        val wait = assertFailsWith<StreamguardException.InvalidConfig> {
            StreamingProviderManager(ManagerConfig(baseUrl = registry.baseUrl, capacityMaxWaitMs = 0uL))
        }
        assertTrue("capacity_max_wait" in wait.detail, wait.detail)
    }

    @Test
    fun exitingWithoutShutdownDoesNotCrashTheJvm() {
        // The JVM exits while engine threads keep calling Kotlin (probe, listener).
        val java = "${System.getProperty("java.home")}/bin/java"
        val child = ProcessBuilder(
            java,
            "-Djna.library.path=${System.getProperty("jna.library.path")}",
            "-cp", System.getProperty("streamguard.test.classpath"),
            "io.streamguard.tests.ExitWithoutShutdownKt", registry.baseUrl,
        ).redirectErrorStream(true).start()
        assertTrue(child.waitFor(60, TimeUnit.SECONDS), "child JVM did not exit")
        val output = child.inputStream.bufferedReader().readText()
        assertEquals(0, child.exitValue(), output)
        assertTrue(output.startsWith("live"), output)
    }

    @Test
    fun closedListenerHandleReceivesNothing() = runBlocking {
        manager().use { m ->
            val quiet = Recorder()
            m.addListener(quiet).close()
            m.addListener(recorder).use {
                m.startStream("s")
                recorder.expect<EventKind.SessionStateChanged> { it.to == SessionState.LIVE }
                m.shutdown()
            }
            assertTrue(quiet.events.isEmpty())
        }
    }
}
