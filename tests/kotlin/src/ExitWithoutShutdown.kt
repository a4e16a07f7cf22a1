// A child JVM for StreamguardTest.exitingWithoutShutdownDoesNotCrashTheJvm: goes live, keeps
// the engine calling Kotlin (probe every 20 ms, events), then exits without shutdown().
package io.streamguard.tests

import io.streamguard.EventListener
import io.streamguard.ManagerConfig
import io.streamguard.StreamEvent
import io.streamguard.StreamingProviderManager
import kotlinx.coroutines.runBlocking

fun main(args: Array<String>) = runBlocking {
    val m = StreamingProviderManager(ManagerConfig(baseUrl = args[0], healthCheckIntervalMs = 20uL))
    m.registerAdapter("agora", ScriptedAdapter("agora", Journal()))
    val handle = m.addListener(object : EventListener {
        override fun onEvent(event: StreamEvent) {}
    })
    m.startStream("s")
    println("live")
    Thread.sleep(300) // let health checks and events flow while the JVM exits
    check(handle.uniffiIsDestroyed.not())
}
