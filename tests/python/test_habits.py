"""What Python users reach for first: cancelling an await cancels the operation,
`async for event in manager.events()`, and `async with StreamingProviderManager(...)`."""

import asyncio
from pathlib import Path
import threading

import pytest

from conftest import WAIT, Recorder, fast_config
from streamguard import EventKind, SessionState, StreamingProviderManager
from test_streamguard import adapters, manager


def register(m, ads):
    for name, adapter in ads.items():
        m.register_adapter(name, adapter)
    return m


def states_of(recorder, stream_id):
    return [k.to for k in recorder.of(EventKind.SESSION_STATE_CHANGED, stream_id=stream_id)]


def test_cancelling_the_await_cancels_the_start_and_leaves_a_late_provider(
    registry, journal, recorder, run
):
    gate = threading.Event()
    ads = adapters(journal, agora={"start": [gate]})

    async def scenario():
        async with register(StreamingProviderManager(fast_config(registry.base_url)), ads) as m:
            handle = m.add_listener(recorder)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(m.start_stream("s"), 0.3)
            # The engine cancelled the start (as end_stream would): without that it would wait
            # for agora (adapter_timeout_ms) and then go live.
            ended = recorder.wait_for(lambda: SessionState.ENDED in states_of(recorder, "s"))
            assert ended, states_of(recorder, "s")
            gate.set()  # the SDK call comes back late, successfully: that provider is left
            assert journal.wait_for(lambda: journal.count("agora", "leave", "s") == 1), journal.calls
            assert SessionState.LIVE not in states_of(recorder, "s")
            assert journal.count("zegocloud", "start", "s") == 0
            # Task cancellation does the same for join_stream.
            task = asyncio.ensure_future(m.join_stream("v"))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del handle

    run(scenario())


def test_events_async_for_sees_every_event_and_ends_at_shutdown(registry, journal, run):
    async def scenario():
        m = register(StreamingProviderManager(fast_config(registry.base_url)), adapters(journal))
        events = m.events()  # subscribed here: the session's first event is not missed
        await m.start_stream("s")
        await m.shutdown()
        states = [
            e.kind.to
            async for e in events
            if isinstance(e.kind, EventKind.SESSION_STATE_CHANGED) and e.kind.stream_id == "s"
        ]
        assert states[0] == SessionState.CONNECTING and states[-2:] == [
            SessionState.LIVE,
            SessionState.ENDED,
        ], states

    run(scenario())


def test_event_stream_aclose_and_consumer_cancellation(registry, journal, recorder, run):
    async def scenario():
        async with manager(fast_config(registry.base_url), adapters(journal), recorder) as m:
            await m.start_stream("s")
            # No event follows agora's first passing check for a while.
            recorder.expect(EventKind.HEALTH_CHANGED, provider="agora")
            events = m.events()
            pending = asyncio.ensure_future(events.__anext__())
            await asyncio.sleep(0)  # let it start waiting
            await events.aclose()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(pending, WAIT)
            # Cancelling a consumer that waits for an event ends it at once.
            consumer = asyncio.ensure_future(m.events().__anext__())
            await asyncio.sleep(0)
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(consumer, WAIT)

    run(scenario())


def test_async_with_shuts_the_manager_down(registry, journal, run):
    async def scenario():
        config = fast_config(registry.base_url)
        async with register(StreamingProviderManager(config), adapters(journal)) as m:
            await m.start_stream("s")
        assert journal.count("agora", "leave", "s") == 1
        assert m.task_count() == 0

    run(scenario())


def test_a_listener_that_raises_is_counted_not_a_panic(registry, journal, recorder, run, capfd):
    failing = Recorder()

    def explode(event):
        Recorder.on_event(failing, event)
        raise RuntimeError("listener bug")

    failing.on_event = explode

    async def scenario():
        m = register(StreamingProviderManager(fast_config(registry.base_url)), adapters(journal))
        async with m:
            handle = m.add_listener(failing)
            await m.start_stream("s")
            failing.expect(EventKind.SESSION_STATE_CHANGED, to=SessionState.LIVE)
        # It kept receiving after throwing, and every throw was counted (shutdown, on leaving
        # the block, returned once every listener call had returned).
        assert handle.failures() == len(failing.events) >= 2

    run(scenario())
    # Caught at the boundary: no Rust panic message (with a backtrace) per event on stderr.
    err = capfd.readouterr().err
    assert "panicked" not in err, err


def test_a_config_prints_its_token_redacted(registry):
    config = fast_config(registry.base_url, auth_token="s3cr3t-token")
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in str(config)
    assert "redacted" in repr(config)


def test_mypy_strict_accepts_an_adapter_and_the_example(tmp_path):
    # The package ships py.typed; mypy comes with the test run (bindings/test.sh installs it).
    import mypy.api as mypy
    example = Path(__file__).with_name("typed_example.py")
    out, err, status = mypy.run(["--strict", "--cache-dir", str(tmp_path), str(example)])
    assert status == 0, out + err


def test_the_package_exports_everything_generated():
    import streamguard
    from streamguard._uniffi import streamguard as generated

    missing = [n for n in streamguard.__all__ if not hasattr(streamguard, n)]
    assert missing == []
    assert set(generated.__all__) - {"quiesce"} <= set(streamguard.__all__)
    # The package's manager is the generated one plus the Python habits.
    assert issubclass(streamguard.StreamingProviderManager, generated.StreamingProviderManager)
