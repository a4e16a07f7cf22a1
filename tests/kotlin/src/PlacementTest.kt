// Stream placement (issue 14) through the Kotlin bindings, against the workspace's real registry
// binary on loopback (bindings/test.sh builds it and passes its path in STREAMGUARD_REGISTRY_BIN):
// a publisher engine and a viewer engine, each with adapters written in Kotlin. Claim and follow,
// the typed errors, hot standby promoted. Every wait is bounded and waits on a condition.
package io.streamguard.placement

import io.streamguard.EventKind
import io.streamguard.EventListener
import io.streamguard.FailoverReason
import io.streamguard.ListenerHandle
import io.streamguard.ManagerConfig
import io.streamguard.tests.fastConfig
import io.streamguard.ProviderAdapter
import io.streamguard.ProviderException
import io.streamguard.ProviderInfo
import io.streamguard.QualityLevel
import io.streamguard.SessionState
import io.streamguard.StreamEvent
import io.streamguard.StreamguardException
import io.streamguard.StreamingProviderManager
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Test
import java.io.File
import java.net.HttpURLConnection
import java.net.URI
import java.nio.file.Files
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.thread
import kotlin.concurrent.withLock
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

const val WAIT_MS = 10_000L
private const val TELEMETRY = "placement-telemetry-token-0001"
private const val PREFIX = "streamguard-registry listening on "

/** The registry binary as a child process: a port the OS picks (printed on stdout), a temporary
 *  SQLite file, admin and telemetry tokens; stopped by its PID. */
class RealRegistry : AutoCloseable {
    private val dir: File = Files.createTempDirectory("sg-placement-kt-").toFile()
    private val process: Process
    val url: String
    val baseUrl: String

    init {
        val bin = System.getenv("STREAMGUARD_REGISTRY_BIN")
            ?: error("STREAMGUARD_REGISTRY_BIN is not set (bindings/test.sh builds and sets it)")
        val seed = File(dir, "seed.json")
        seed.writeText(
            """{"providers":[
              {"name":"agora","isActive":true,"priority":1,"config":{"appId":"a-1"}},
              {"name":"zegocloud","isActive":true,"priority":2,"config":{}},
              {"name":"webrtc","isActive":true,"priority":3,"config":{}}]}""",
        )
        val pb = ProcessBuilder(bin)
        val env = pb.environment()
        env.keys.removeIf { it.startsWith("STREAMGUARD_") }
        env["STREAMGUARD_REGISTRY_ADDR"] = "127.0.0.1:0"
        env["STREAMGUARD_REGISTRY_DB"] = File(dir, "registry.db").path
        env["STREAMGUARD_REGISTRY_SEED"] = seed.path
        env["STREAMGUARD_ADMIN_TOKEN"] = "placement-admin-token-0001"
        env["STREAMGUARD_SUPER_ADMIN_TOKEN"] = "placement-super-token-0001"
        env["STREAMGUARD_TELEMETRY_TOKEN"] = TELEMETRY
        env["STREAMGUARD_RATE_LIMIT_PER_SEC"] = "0"
        env["RUST_LOG"] = "warn"
        pb.redirectError(File(dir, "stderr.txt"))
        process = pb.start()
        val reader = process.inputStream.bufferedReader()
        val first = CompletableFuture<String?>()
        thread(isDaemon = true) {
            first.complete(reader.readLine())
            reader.readText() // drain: the child never blocks on a full pipe
        }
        val line = runCatching { first.get(15, TimeUnit.SECONDS) }.getOrNull()
        if (line == null || !line.startsWith(PREFIX)) {
            close()
            error("registry did not start: $line")
        }
        url = line.removePrefix(PREFIX)
        baseUrl = "$url/api"
    }

    /** GET /api/streaming/streams/{id}: the placement as JSON text, or null on 404. */
    fun placement(streamId: String): String? {
        val c = URI("$url/api/streaming/streams/$streamId").toURL().openConnection() as HttpURLConnection
        c.connectTimeout = 5000
        c.readTimeout = 5000
        return try {
            if (c.responseCode == 404) null else c.inputStream.bufferedReader().readText()
        } finally {
            c.disconnect()
        }
    }

    override fun close() {
        process.destroy() // SIGTERM to this PID
        if (!process.waitFor(15, TimeUnit.SECONDS)) {
            process.destroyForcibly()
            process.waitFor(15, TimeUnit.SECONDS)
        }
        dir.deleteRecursively()
    }
}

/** A lock and condition with a bounded wait for a predicate. */
open class Guarded {
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

/** One simulated SDK: records "provider method streamId"; throws [failStart] on its first start. */
class SimAdapter(
    private val name: String,
    private val calls: Calls,
    private val parallel: Boolean,
    private var failStart: ProviderException? = null,
) : ProviderAdapter {
    private suspend fun call(method: String, id: String) {
        calls.record("$name $method $id")
        delay(1) // a real suspension point, as an SDK call would have
    }

    override suspend fun initialize(provider: ProviderInfo) = call("initialize", provider.name)
    override suspend fun startStream(streamId: String) {
        call("start", streamId)
        failStart?.let { failStart = null; throw it }
    }
    override suspend fun joinStream(streamId: String) = call("join", streamId)
    override suspend fun leaveStream(streamId: String) = call("leave", streamId)
    override suspend fun probe() = throw ProviderException.NotSupported("probe")
    override suspend fun setQuality(streamId: String, level: QualityLevel) =
        throw ProviderException.NotSupported("set_quality")
    override fun supportsParallelSessions() = parallel
}

class Calls : Guarded() {
    val list = mutableListOf<String>()

    fun record(call: String) {
        lock.withLock { list.add(call) }
        changed()
    }

    fun count(call: String) = lock.withLock { list.count { it == call } }

    /** Providers started or joined for [streamId] and not left since. */
    fun carrying(streamId: String): Set<String> = lock.withLock {
        val on = mutableSetOf<String>()
        for (c in list) {
            val (p, m, s) = c.split(" ")
            if (s != streamId) continue
            if (m == "start" || m == "join") on.add(p) else if (m == "leave") on.remove(p)
        }
        on
    }
}

class Events : Guarded(), EventListener {
    val kinds = mutableListOf<EventKind>()

    override fun onEvent(event: StreamEvent) {
        lock.withLock { kinds.add(event.kind) }
        changed()
    }

    inline fun <reified T : EventKind> expect(crossinline match: (T) -> Boolean = { true }): T {
        val found = waitFor { kinds.any { it is T && match(it) } }
        assertTrue(found, "no ${T::class.simpleName} within ${WAIT_MS}ms; saw ${lock.withLock { kinds.toList() }}")
        return lock.withLock { kinds.filterIsInstance<T>().first { match(it) } }
    }

    inline fun <reified T : EventKind> indexOf(crossinline match: (T) -> Boolean): Int =
        lock.withLock { kinds.indexOfFirst { it is T && match(it) } }
}

/** One app: a manager with a [SimAdapter] per name, its calls and its events. */
class Engine(
    registry: RealRegistry,
    names: List<String> = listOf("agora", "zegocloud", "webrtc"),
    parallel: Boolean = false,
    failStartOn: String? = null,
    standbyProviders: UInt = 0u,
    waitForLiveMs: ULong = 0uL,
) : AutoCloseable {
    val calls = Calls()
    val events = Events()
    val manager = StreamingProviderManager(
        fastConfig(registry.baseUrl).copy(
            authToken = TELEMETRY,
            standbyProviders = standbyProviders,
            waitForLiveMs = waitForLiveMs,
        ),
    )
    private val handle: ListenerHandle

    init {
        for (n in names) {
            val fail = if (n == failStartOn) ProviderException.Unauthorized("refused") else null
            manager.registerAdapter(n, SimAdapter(n, calls, parallel, fail))
        }
        handle = manager.addListener(events)
    }

    override fun close() = runBlocking {
        manager.shutdown()
        handle.close()
        manager.close()
    }
}

class PlacementTest {
    private val registry = RealRegistry()

    @AfterEach
    fun stop() = registry.close()

    @Test
    fun aViewerJoinsWhereThePublisherIsAndFollowsItsMove() = runBlocking {
        Engine(registry, failStartOn = "agora").use { pub ->
            Engine(registry).use { viewer ->
                // agora refuses this publisher (it stays everyone's preferred provider).
                assertEquals("zegocloud", pub.manager.startStream("cam").provider)
                val claim = pub.events.expect<EventKind.PlacementChanged>()
                assertEquals(Triple("zegocloud", 1uL, true), Triple(claim.provider, claim.epoch, claim.live))
                assertTrue(registry.placement("cam")!!.contains(""""provider":"zegocloud""""))

                assertEquals("zegocloud", viewer.manager.joinStream("cam").provider)
                assertEquals(0, viewer.calls.count("agora join cam"))

                // Only the publisher's SDK fails on zegocloud (for the viewer it stays healthy):
                // the publisher moves, the viewer follows.
                pub.manager.recordError("cam", ProviderException.Unauthorized("token revoked"))
                val moved = pub.events.expect<EventKind.MigrationFinished>().to
                assertTrue(moved != "zegocloud")
                val seen = viewer.events.expect<EventKind.PlacementChanged> { it.provider == moved }
                assertEquals(2uL, seen.epoch)
                val why = viewer.events.expect<EventKind.Failover>()
                assertEquals(FailoverReason.PLACEMENT_CHANGED, why.reason)
                val followed = viewer.events.expect<EventKind.MigrationFinished>()
                assertEquals("zegocloud" to moved, followed.from to followed.to)
                assertTrue(
                    viewer.events.indexOf<EventKind.PlacementChanged> { it.provider == moved } <
                        viewer.events.indexOf<EventKind.MigrationFinished> { true },
                )
                assertEquals(moved, viewer.manager.session("cam")?.provider)
                assertEquals(setOf(moved), viewer.calls.carrying("cam"))
            }
        }
    }

    @Test
    fun aSecondPublisherGetsStreamClaimedByOther() = runBlocking {
        Engine(registry).use { first ->
            Engine(registry).use { second ->
                first.manager.startStream("cam")
                val e = assertFailsWith<StreamguardException.StreamClaimedByOther> { second.manager.startStream("cam") }
                assertEquals("cam", e.streamId)
                assertEquals("streamId=cam", e.message)
                assertEquals(SessionState.FAILED, second.manager.session("cam")?.state)
                assertEquals(emptySet(), second.calls.carrying("cam"))
                assertEquals(SessionState.LIVE, first.manager.session("cam")?.state)
            }
        }
    }

    @Test
    fun viewersGetTypedErrorsForStreamsTheyCannotWatch() = runBlocking {
        Engine(registry, names = listOf("webrtc")).use { pub ->
            Engine(registry, names = listOf("agora", "zegocloud")).use { viewer ->
                val notLive = assertFailsWith<StreamguardException.StreamNotLive> { viewer.manager.joinStream("nobody") }
                assertEquals("nobody", notLive.streamId)
                assertEquals("streamId=nobody", notLive.message)
                assertEquals("webrtc", pub.manager.startStream("cam").provider)
                val noAdapter = assertFailsWith<StreamguardException.NoAdapterForPlacement> {
                    viewer.manager.joinStream("cam")
                }
                assertEquals("cam" to listOf("webrtc"), noAdapter.streamId to noAdapter.providers)
                assertEquals(0, viewer.calls.lock.withLock { viewer.calls.list.count { " join " in it } })
            }
        }
    }

    @Test
    fun aJoinWithWaitForLiveJoinsOnceThePublisherStarts() = runBlocking {
        Engine(registry, failStartOn = "agora").use { pub ->
            Engine(registry, waitForLiveMs = 20_000uL).use { viewer ->
                val join = async(Dispatchers.Default) { viewer.manager.joinStream("cam") }
                // It waits: not failed with StreamNotLive, not joined anywhere.
                assertNull(withTimeoutOrNull(800) { join.await() })
                assertEquals(0, viewer.calls.lock.withLock { viewer.calls.list.count { " join " in it } })
                assertEquals("zegocloud", pub.manager.startStream("cam").provider)
                assertEquals("zegocloud", withTimeout(WAIT_MS) { join.await() }.provider)
            }
        }
    }

    @Test
    fun aHotStandbyIsListedAndPromotedWhenThePrimaryFails() = runBlocking {
        Engine(registry, parallel = true, standbyProviders = 1u).use { pub ->
            Engine(registry, parallel = true).use { viewer ->
                assertEquals("agora", pub.manager.startStream("cam").provider)
                val listed = pub.events.expect<EventKind.PlacementChanged> { it.standby == listOf("zegocloud") }
                assertEquals("agora", listed.provider)
                assertTrue(registry.placement("cam")!!.contains(""""standby":["zegocloud"]"""))
                assertEquals(listOf("zegocloud"), pub.manager.session("cam")?.standby)
                assertEquals(1u, pub.manager.providerStats().first { it.provider == "zegocloud" }.standbySessions)

                assertEquals("agora", viewer.manager.joinStream("cam").provider)
                pub.manager.recordError("cam", ProviderException.Unauthorized("primary lost"))
                val promoted = pub.events.expect<EventKind.StandbyPromoted>()
                assertEquals("agora" to "zegocloud", promoted.from to promoted.to)
                assertTrue(promoted.epoch > listed.epoch)
                assertEquals(1, pub.calls.count("zegocloud start cam"), "promoted without a start")
                val followed = viewer.events.expect<EventKind.MigrationFinished>()
                assertEquals("agora" to "zegocloud", followed.from to followed.to)
                assertEquals(setOf("zegocloud"), viewer.calls.carrying("cam"))
            }
        }
    }
}
