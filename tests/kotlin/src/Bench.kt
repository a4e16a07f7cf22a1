// Cost of crossing the Kotlin/JNA <-> Rust boundary (run by bindings/bench.sh against the release
// library): a cheap synchronous call, an async call into the engine's runtime, and a start/end
// cycle whose adapter calls run as Kotlin coroutines. Reuses the test fixtures.
package io.streamguard.tests

import io.streamguard.ManagerConfig
import io.streamguard.StreamingProviderManager
import kotlinx.coroutines.runBlocking

private fun rate(label: String, n: Int, nanos: Long, unit: String = "calls") {
    val seconds = nanos / 1e9
    println("kotlin  %-44s %,10.0f %s/s  %8.1f us/%s".format(label, n / seconds, unit, seconds / n * 1e6, unit.dropLast(1)))
}

private inline fun timed(n: Int, body: () -> Unit): Long {
    val start = System.nanoTime()
    repeat(n) { body() }
    return System.nanoTime() - start
}

fun main(args: Array<String>) = runBlocking {
    val scale = args.firstOrNull()?.toInt() ?: 1
    val registry = Registry()
    val journal = Journal()
    val m = StreamingProviderManager(ManagerConfig(baseUrl = registry.baseUrl, healthCheckIntervalMs = 60_000uL))
    m.registerAdapter("agora", ScriptedAdapter("agora", journal))

    // JIT warm-up of both sync paths (JNA direct calls, RustBuffer lowering).
    timed(100_000 / scale) { m.taskCount(); m.session("x") }
    var n = 200_000 / scale
    rate("taskCount() (sync)", n, timed(n) { m.taskCount() })
    rate("session(\"x\") -> null (sync)", n, timed(n) { m.session("x") })

    m.startStream("warm")
    m.endStream("warm")
    repeat(2_000) { m.endStream("warm") }
    n = 20_000 / scale
    rate("endStream(ended) (async, Rust only)", n, timed(n) { m.endStream("warm") })

    n = 2_000 / scale
    rate("startStream+endStream (2 async adapter calls)", n, timed(n) {
        val id = "s${System.nanoTime()}"
        m.startStream(id)
        m.endStream(id)
    }, "cycles")
    m.shutdown()
    m.close()
    registry.close()
}
