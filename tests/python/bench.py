"""Cost of crossing the Python <-> Rust boundary (run by bindings/bench.sh against the release
wheel): a cheap synchronous call, an async call into the engine's runtime, and a start/end
cycle whose adapter calls run in Python. Prints one line per measurement."""

import asyncio
import sys
import time

from conftest import Journal, Registry, ScriptedAdapter, fast_config

import streamguard


def rate(label, n, seconds, unit="calls"):
    print(f"python  {label:<44} {n / seconds:>10,.0f} {unit}/s  {seconds / n * 1e6:>8.1f} us/{unit[:-1]}")


def timed(n, fn):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


async def main(scale):
    registry = Registry()
    journal = Journal()
    m = streamguard.StreamingProviderManager(fast_config(registry.base_url, health_check_interval_ms=60000))
    m.register_adapter("agora", ScriptedAdapter("agora", journal))

    n = 200_000 // scale
    timed(1000, m.task_count)
    rate("task_count() (sync)", n, timed(n, m.task_count))
    rate('session("x") -> None (sync)', n, timed(n, lambda: m.session("x")))

    await m.start_stream("warm")
    await m.end_stream("warm")
    n = 20_000 // scale
    start = time.perf_counter()
    for _ in range(n):
        await m.end_stream("warm")  # a no-op in the engine: the async crossing alone
    rate("await end_stream(ended) (async, Rust only)", n, time.perf_counter() - start)

    n = 2_000 // scale
    start = time.perf_counter()
    for i in range(n):
        await m.start_stream(f"s{i}")  # adapter.start_stream runs in Python
        await m.end_stream(f"s{i}")  # adapter.leave_stream runs in Python
    rate("start_stream+end_stream (2 async adapter calls)", n, time.perf_counter() - start, "cycles")
    await m.shutdown()
    registry.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
