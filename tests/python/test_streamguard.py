"""End-to-end scenarios of the Python bindings in real time: the installed `streamguard` wheel,
Python adapters with async methods, and a real HTTP registry on loopback."""

import asyncio
import contextlib
import json
import subprocess
import sys
import time

import pytest

import streamguard
from conftest import WAIT, ScriptedAdapter, Recorder, fast_config
from streamguard import (
    EventKind,
    FailoverReason,
    HealthStatus,
    ManagerConfig,
    MigrationStrategy,
    ProviderAdapter,
    ProviderError,
    ProviderErrorKind,
    SessionState,
    StreamguardError,
    StreamingProviderManager,
)


@contextlib.asynccontextmanager
async def manager(config, adapters, recorder=None):
    """A manager with `adapters` registered and `recorder` listening; always shut down."""
    m = StreamingProviderManager(config)
    for name, adapter in adapters.items():
        m.register_adapter(name, adapter)
    handle = m.add_listener(recorder) if recorder is not None else None
    try:
        yield m
    finally:
        await m.shutdown()
        del handle


def adapters(journal, **scripts):
    """One ScriptedAdapter per registry provider; `scripts` maps a name to its script dict."""
    return {
        name: ScriptedAdapter(name, journal, **scripts.get(name, {}))
        for name in ("agora", "zegocloud", "webrtc")
    }


def test_start_fails_over_after_two_transient_errors(registry, journal, recorder, run):
    timeouts = [ProviderError.Timeout("join timed out")] * 2
    ads = adapters(journal, agora={"start": timeouts})

    async def scenario():
        async with manager(fast_config(registry.base_url), ads, recorder) as m:
            session = await m.start_stream("stream-42")
            assert session.provider == "zegocloud"
            assert session.state == SessionState.LIVE
            assert session.attempts == 3
            assert journal.count("agora", "start") == 2
            assert journal.count("zegocloud", "start") == 1
            failed = recorder.expect(EventKind.ATTEMPT_FAILED, attempt=2)
            assert failed.error_kind == ProviderErrorKind.TIMEOUT
            assert failed.error_detail == "join timed out"
            failover = recorder.expect(EventKind.FAILOVER, stream_id="stream-42")
            assert (failover._from, failover.to) == ("agora", "zegocloud")
            assert failover.reason == FailoverReason.RETRIES_EXHAUSTED
            stats = {s.provider: s for s in m.provider_stats()}
            assert stats["agora"].failures == 2
            assert stats["zegocloud"].successes == 1
            assert stats["zegocloud"].live_sessions == 1
            assert m.session("stream-42") == session
            assert [s.stream_id for s in m.sessions()] == ["stream-42"]
            # The registry config reached the adapter as JSON.
            assert ads["agora"].configs == [{"appId": "a-1"}]

    run(scenario())
    # Adapter coroutines ran on the package's background loop: the engine called them from its
    # own threads and nobody registered a loop.
    assert journal.threads == {"streamguard-asyncio"}


def test_all_providers_down_fails_after_exactly_three_attempts(registry, journal, run):
    down = {"start": [ProviderError.Unavailable("down")] * 5}
    ads = adapters(journal, agora=down, zegocloud=down, webrtc=down)

    async def scenario():
        async with manager(fast_config(registry.base_url), ads) as m:
            with pytest.raises(StreamguardError.AllAttemptsFailed) as err:
                await m.start_stream("s")
            attempts = err.value.attempts
            assert len(attempts) == 3
            assert [a.number for a in attempts] == [1, 2, 3]
            assert [a.provider for a in attempts] == ["agora", "agora", "zegocloud"]
            assert all(a.kind == ProviderErrorKind.UNAVAILABLE for a in attempts)
            # The provider, attempt number, kind and detail are in the text a traceback or a
            # log shows (records repr as their contents).
            shown = str(err.value)
            assert "provider=agora" in shown and "number=2" in shown, shown
            assert "UNAVAILABLE" in shown and "detail=down" in shown, shown
            assert m.session("s").state == SessionState.FAILED
            # Nothing keeps retrying: no fourth start within several backoff caps.
            assert not journal.wait_for(lambda: journal.count(method="start") > 3, timeout=0.5)
            assert journal.count(method="start") == 3

    run(scenario())


def test_health_failure_migrates_a_live_stream(registry, journal, recorder, run):
    ads = adapters(journal)

    async def scenario():
        async with manager(fast_config(registry.base_url), ads, recorder) as m:
            session = await m.start_stream("s")
            assert session.provider == "agora"
            assert registry.wait_for(lambda: registry.health_requests.get("agora", 0) >= 1)
            started = time.monotonic()
            registry.set_unhealthy("agora")
            down = recorder.expect(EventKind.HEALTH_CHANGED, provider="agora", to=HealthStatus.UNHEALTHY)
            assert down.consecutive_failures == 3
            done = recorder.expect(EventKind.MIGRATION_FINISHED, stream_id="s")
            assert (done._from, done.to) == ("agora", "zegocloud")
            assert done.strategy == MigrationStrategy.BREAK_BEFORE_MAKE
            # Detection: a regular check (<= 300 ms) plus re-checks after 100 and 200 ms.
            assert time.monotonic() - started < 3.0
            assert journal.count("agora", "leave", "s") == 1
            assert m.session("s").provider == "zegocloud"
            assert m.session("s").migrations == 1
            started_evt = recorder.expect(EventKind.MIGRATION_STARTED, stream_id="s")
            assert started_evt.reason == FailoverReason.HEALTH_CHECK_FAILED
            stats = {s.provider: s for s in m.provider_stats()}
            assert stats["agora"].status == HealthStatus.UNHEALTHY
            assert stats["agora"].failed_health_checks >= 3
            assert stats["agora"].times_ejected == 1
            assert stats["agora"].cooling_for_ms is not None

    run(scenario())


def test_make_before_break_when_both_adapters_run_in_parallel(registry, journal, recorder, run):
    ads = {
        name: ScriptedAdapter(name, journal, parallel=True)
        for name in ("agora", "zegocloud", "webrtc")
    }

    async def scenario():
        async with manager(fast_config(registry.base_url), ads, recorder) as m:
            await m.start_stream("s")
            registry.set_unhealthy("agora")
            done = recorder.expect(EventKind.MIGRATION_FINISHED, stream_id="s")
            assert done.strategy == MigrationStrategy.MAKE_BEFORE_BREAK
            assert done.gap_ms == 0
            with journal.cond:
                calls = [c for c in journal.calls if c[1] in ("start", "leave")]
            # The new provider started before the old one was left.
            assert calls.index(("zegocloud", "start", "s")) < calls.index(("agora", "leave", "s"))

    run(scenario())


def test_registry_list_change_migrates(registry, journal, recorder, run):
    ads = adapters(journal)

    async def scenario():
        async with manager(fast_config(registry.base_url), ads, recorder) as m:
            assert (await m.start_stream("s")).provider == "agora"
            registry.update("agora", isActive=False)
            moved = recorder.expect(EventKind.MIGRATION_STARTED, stream_id="s")
            assert moved.reason == FailoverReason.PROVIDER_DISABLED
            done = recorder.expect(EventKind.MIGRATION_FINISHED, stream_id="s")
            assert done.to == "zegocloud"
            listed = recorder.expect(EventKind.PROVIDER_LIST_CHANGED, active=["zegocloud", "webrtc"])
            assert listed.active == ["zegocloud", "webrtc"]
            assert [p.name for p in m.providers() if p.is_active] == ["zegocloud", "webrtc"]
            # A priority change makes webrtc preferred: the session follows.
            registry.update("webrtc", priority=0)
            recorder.expect(EventKind.MIGRATION_FINISHED, stream_id="s", to="webrtc")
            assert m.session("s").provider == "webrtc"

    run(scenario())


def test_end_stream_stops_health_polling(registry, journal, run):
    ads = adapters(journal)

    async def scenario():
        async with manager(fast_config(registry.base_url), ads) as m:
            await m.start_stream("s")
            assert registry.wait_for(lambda: registry.health_requests.get("agora", 0) >= 2)
            await m.end_stream("s")
            assert journal.count("agora", "leave", "s") == 1
            assert m.session("s").state == SessionState.ENDED
            # One check already on the wire may still land; no other follows (the interval is
            # 300 ms, so four would have come in this window).
            at_end = registry.health_count("agora")
            grew = registry.wait_for(lambda: registry.health_requests.get("agora", 0) > at_end + 1, 1.2)
            assert not grew, "health checks continued after end_stream"
            # Ending again is a no-op; an unknown id is an error.
            await m.end_stream("s")
            with pytest.raises(StreamguardError.UnknownSession):
                await m.end_stream("nope")

    run(scenario())


def test_shutdown_leaves_every_provider_and_stops_every_task(registry, journal, recorder, run):
    ads = adapters(journal, agora={"join": [ProviderError.Unauthorized("bad token")]})

    async def scenario():
        m = StreamingProviderManager(fast_config(registry.base_url))
        for name, adapter in ads.items():
            m.register_adapter(name, adapter)
        handle = m.add_listener(recorder)
        assert (await m.start_stream("pub")).provider == "agora"
        viewer = await m.join_stream("view")
        assert viewer.provider == "zegocloud"
        await m.shutdown()
        assert journal.count("agora", "leave", "pub") == 1
        assert journal.count("zegocloud", "leave", "view") == 1
        assert m.task_count() == 0
        recorder.expect(EventKind.SESSION_STATE_CHANGED, stream_id="pub", to=SessionState.ENDED)
        recorder.expect(EventKind.SESSION_STATE_CHANGED, stream_id="view", to=SessionState.ENDED)
        with pytest.raises(StreamguardError.ShutDown):
            await m.start_stream("again")
        await m.shutdown()  # idempotent
        handle.close()

    run(scenario())


def test_unexpected_python_exception_fails_over_at_once(registry, journal, recorder, run):
    ads = adapters(journal, agora={"start": [KeyError("sdk bug")]})

    async def scenario():
        async with manager(fast_config(registry.base_url), ads, recorder) as m:
            session = await m.start_stream("s")
            assert session.provider == "zegocloud"
            # Internal is provider-fatal: no retry on agora.
            assert journal.count("agora", "start") == 1
            failed = recorder.expect(EventKind.ATTEMPT_FAILED, provider="agora")
            assert failed.error_kind == ProviderErrorKind.INTERNAL
            assert "KeyError" in failed.error_detail
            assert failed.retry_in_ms is None
            failover = recorder.expect(EventKind.FAILOVER, stream_id="s")
            assert failover.reason == FailoverReason.PROVIDER_REJECTED

    run(scenario())


def test_hanging_adapter_times_out_and_is_cancelled(registry, journal, recorder, run):
    ads = adapters(journal, agora={"start": ["hang", "hang"]})
    config = fast_config(registry.base_url, adapter_timeout_ms=250)

    async def scenario():
        async with manager(config, ads, recorder) as m:
            started = time.monotonic()
            session = await m.start_stream("s")
            assert session.provider == "zegocloud"
            assert time.monotonic() - started < 5.0
            failed = recorder.expect(EventKind.ATTEMPT_FAILED, provider="agora", attempt=2)
            assert failed.error_kind == ProviderErrorKind.TIMEOUT
            # Both hung coroutines were cancelled when the engine gave up on them.
            assert journal.wait_for(lambda: len(journal.cancelled) == 2), journal.cancelled

    run(scenario())


def test_record_error_from_sdk_callback_moves_the_session(registry, journal, recorder, run):
    ads = adapters(journal)

    async def scenario():
        async with manager(fast_config(registry.base_url), ads, recorder) as m:
            await m.start_stream("s")
            m.record_error("s", ProviderError.QuotaExceeded("quota gone"))
            started = recorder.expect(EventKind.MIGRATION_STARTED, stream_id="s")
            assert started.reason == FailoverReason.ERROR_REPORTED
            recorder.expect(EventKind.MIGRATION_FINISHED, stream_id="s", to="zegocloud")
            stats = {s.provider: s for s in m.provider_stats()}
            assert stats["agora"].reported_errors == 1
            with pytest.raises(StreamguardError.UnknownSession):
                m.record_error("nope", ProviderError.Network("x"))

    run(scenario())


def test_invalid_stream_stops_without_trying_another_provider(registry, journal, run):
    ads = adapters(journal, agora={"start": [ProviderError.InvalidStream("banned")]})

    async def scenario():
        async with manager(fast_config(registry.base_url), ads) as m:
            with pytest.raises(StreamguardError.RequestRejected) as err:
                await m.start_stream("s")
            assert err.value.provider == "agora"
            assert err.value.kind == ProviderErrorKind.INVALID_STREAM
            assert err.value.detail == "banned"
            assert journal.count(method="start") == 1

    run(scenario())


def test_minimal_adapter_gets_default_probe_and_parallel(registry, run):
    class Minimal(ProviderAdapter):
        async def initialize(self, provider):
            pass

        async def start_stream(self, stream_id):
            pass

        async def join_stream(self, stream_id):
            pass

        async def leave_stream(self, stream_id):
            pass

    async def scenario():
        async with manager(fast_config(registry.base_url), {"agora": Minimal()}) as m:
            await m.start_stream("s")
            # Health checks run (registry only, probe "not supported") and keep it healthy.
            assert registry.wait_for(lambda: registry.health_requests.get("agora", 0) >= 3)
            stats = {s.provider: s for s in m.provider_stats()}
            assert stats["agora"].status == HealthStatus.HEALTHY
            assert stats["agora"].failed_health_checks == 0

    run(scenario())
    with pytest.raises(ProviderError.NotSupported):
        asyncio.run(Minimal().probe())
    assert Minimal().supports_parallel_sessions() is False


def test_listener_handle_close_and_failing_listener(registry, journal, run):
    closed, failing, healthy = Recorder(), Recorder(), Recorder()

    def explode(event):
        Recorder.on_event(failing, event)
        raise RuntimeError("listener bug")

    failing.on_event = explode

    async def scenario():
        m = StreamingProviderManager(fast_config(registry.base_url))
        m.register_adapter("agora", ScriptedAdapter("agora", journal))
        h1 = m.add_listener(closed)
        h2 = m.add_listener(failing)
        h3 = m.add_listener(healthy)
        h1.close()
        h1.close()  # idempotent
        await m.start_stream("s")
        healthy.expect(EventKind.SESSION_STATE_CHANGED, to=SessionState.LIVE)
        # A listener that throws keeps receiving later events.
        failing.expect(EventKind.SESSION_STATE_CHANGED, to=SessionState.LIVE)
        assert len(failing.events) >= 2
        await m.shutdown()
        assert closed.events == []
        del h2, h3

    run(scenario())


def test_config_defaults_match_the_engine_and_validation(registry):
    url = registry.base_url
    assert ManagerConfig(base_url=url) == streamguard.default_manager_config(url)
    shown = str(ManagerConfig(base_url=url, auth_token="s3cr3t-token"))
    assert "s3cr3t" not in shown and "redacted" in shown, shown
    assert "max_total_streams: None" in shown and "capacity_lease_ttl_ms: 60000" in shown, shown
    with pytest.raises(StreamguardError.InvalidConfig) as err:
        StreamingProviderManager(ManagerConfig(base_url=url, health_check_interval_ms=0))
    assert "health_check_interval" in err.value.detail
    with pytest.raises(StreamguardError.InvalidConfig):
        StreamingProviderManager(ManagerConfig(base_url="http://example.com/api"))
    m = StreamingProviderManager(ManagerConfig(base_url=url))
    with pytest.raises(StreamguardError.InvalidArgument):
        m.register_adapter("", ScriptedAdapter("x", None))
    asyncio.run(m.shutdown())


def test_a_full_provider_fails_with_no_capacity_until_its_slot_is_freed(registry, journal, run):
    # One provider, one stream slot (the registry's `maxStreams`).
    registry.set_providers(
        [{"name": "agora", "isActive": True, "priority": 1, "config": {}, "maxStreams": 1}]
    )
    ads = {"agora": ScriptedAdapter("agora", journal)}

    async def scenario():
        # Default capacity settings: wait_for_capacity is off, so a full provider fails at once.
        config = fast_config(registry.base_url)
        assert config.wait_for_capacity is False
        async with manager(config, ads) as m:
            assert (await m.start_stream("a")).provider == "agora"
            with pytest.raises(StreamguardError.NoCapacity) as err:
                await m.start_stream("b")
            assert err.value.providers == ["agora"]
            assert err.value.waited_ms == 0
            assert err.value.attempts == []
            assert "agora" in str(err.value)
            # No adapter call was made for "b".
            assert journal.count("agora", "start", "b") == 0
            assert m.session("b").state == SessionState.FAILED
            await m.end_stream("a")
            session = await m.start_stream("b")
            assert (session.provider, session.state) == ("agora", SessionState.LIVE)
            assert journal.count("agora", "start", "b") == 1

    run(scenario())


def test_capacity_settings_are_validated(registry):
    url = registry.base_url
    with pytest.raises(StreamguardError.InvalidConfig) as err:
        StreamingProviderManager(ManagerConfig(base_url=url, max_total_streams=0))
    assert "max_total_streams" in err.value.detail
    with pytest.raises(StreamguardError.InvalidConfig) as err:
        StreamingProviderManager(ManagerConfig(base_url=url, capacity_lease_ttl_ms=5))
    assert "capacity_lease_ttl" in err.value.detail
    with pytest.raises(StreamguardError.InvalidConfig) as err:
        StreamingProviderManager(ManagerConfig(base_url=url, capacity_max_wait_ms=0))
    assert "capacity_max_wait" in err.value.detail


def test_refresh_providers_and_backend_errors(registry, journal, recorder, run):
    async def scenario():
        async with manager(fast_config(registry.base_url), adapters(journal), recorder) as m:
            listed = await m.refresh_providers()
            assert [p.name for p in listed] == ["agora", "zegocloud", "webrtc"]
            assert json.loads(listed[0].config_json) == {"appId": "a-1"}
            assert listed[0].max_streams is None
        # A registry that is gone: the start fails with a typed backend error.
        async with manager(fast_config("http://127.0.0.1:9/api", request_timeout_ms=500), {}) as m:
            with pytest.raises(StreamguardError.Backend):
                await m.start_stream("s")

    run(scenario())


def test_dropping_a_manager_without_shutdown_leaves_providers(registry, journal, run):
    import gc

    async def scenario():
        m = StreamingProviderManager(fast_config(registry.base_url))
        m.register_adapter("agora", ScriptedAdapter("agora", journal))
        await m.start_stream("s")
        del m
        gc.collect()
        # The engine leaves the provider in the background, on its own runtime.
        assert journal.wait_for(lambda: journal.count("agora", "leave", "s") == 1)

    run(scenario())


EXIT_WITHOUT_SHUTDOWN = """
import asyncio, sys
import streamguard

class Adapter(streamguard.ProviderAdapter):
    async def initialize(self, provider): pass
    async def start_stream(self, stream_id): pass
    async def join_stream(self, stream_id): pass
    async def leave_stream(self, stream_id): print("left", stream_id, flush=True)
    async def probe(self): pass   # called from engine threads every 20 ms until the end

class Listener(streamguard.EventListener):
    def on_event(self, event): pass

async def main():
    config = streamguard.ManagerConfig(base_url=sys.argv[1], health_check_interval_ms=20)
    manager = streamguard.StreamingProviderManager(config)
    manager.register_adapter("agora", Adapter())
    globals()["kept"] = (manager, manager.add_listener(Listener()))
    await manager.start_stream("s")
    print("live", flush=True)

asyncio.run(main())
"""


def test_exiting_without_shutdown_leaves_providers_and_exits_cleanly(registry):
    # The interpreter exits while engine threads keep calling Python (probe, listener): the
    # package's exit hook shuts the manager down first.
    # The abort this guards against was a race: run the child a few times.
    for _ in range(3):
        child = subprocess.run(
            [sys.executable, "-c", EXIT_WITHOUT_SHUTDOWN, registry.base_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.split("\n")[:2] == ["live", "left s"], child.stdout


def test_adapters_run_on_the_loop_set_with_uniffi_set_event_loop(registry, journal, run):
    import threading

    app_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=app_loop.run_forever, name="app-loop", daemon=True)
    thread.start()
    streamguard.uniffi_set_event_loop(app_loop)
    try:

        async def scenario():
            async with manager(fast_config(registry.base_url), adapters(journal)) as m:
                await m.start_stream("s")

        run(scenario())
        assert journal.threads == {"app-loop"}
    finally:
        streamguard.uniffi_set_event_loop(None)
        app_loop.call_soon_threadsafe(app_loop.stop)
        thread.join(timeout=WAIT)
