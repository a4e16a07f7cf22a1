"""Stream placement (issue 14) through the Python bindings, against the workspace's real registry
binary on loopback: a publisher engine and a viewer engine, each with adapters written in
Python. The publisher claims where it publishes; the viewer joins there and follows it; a second
publisher, a stream nobody publishes and a placement without an adapter give typed errors; hot
standby copies are listed and promoted. Every wait is bounded: on an event of an engine, or
polling the registry's own state."""

import asyncio
import contextlib
import os
import time

import pytest

from conftest import WAIT, Journal, Recorder, ScriptedAdapter, fast_config
from real_registry import PROVIDERS, SUPER, TELEMETRY, RealRegistry
from streamguard import (
    EventKind,
    FailoverReason,
    ProviderError,
    SessionState,
    StreamguardError,
    StreamingProviderManager,
)

NAMES = ("agora", "zegocloud", "webrtc")


def registry_binary():
    path = os.environ.get("STREAMGUARD_REGISTRY_BIN")
    if not path:
        pytest.skip("STREAMGUARD_REGISTRY_BIN is not set (bindings/test.sh builds and sets it)")
    assert os.access(path, os.X_OK), f"not an executable: {path}"
    return path


@pytest.fixture
def real_registry():
    r = RealRegistry(registry_binary())
    yield r
    r.close()


def until(predicate, timeout=WAIT):
    """Poll state outside this process (the registry) until `predicate` holds, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def placement_config(base_url, **overrides):
    """Fast intervals, the telemetry token (claims are authenticated like telemetry)."""
    return fast_config(base_url, auth_token=TELEMETRY, **overrides)


class Engine:
    """One app: a manager, its Python adapters (one per name, scripted), its journal of adapter
    calls and its recorder of events."""

    def __init__(self, base_url, names=NAMES, parallel=False, scripts=None, **config):
        self.journal = Journal()
        self.events = Recorder()
        self.adapters = {
            n: ScriptedAdapter(n, self.journal, parallel=parallel, **(scripts or {}).get(n, {}))
            for n in names
        }
        self.manager = StreamingProviderManager(placement_config(base_url, **config))
        for name, adapter in self.adapters.items():
            self.manager.register_adapter(name, adapter)
        self.handle = self.manager.add_listener(self.events)

    def index_of(self, kind_class, **fields):
        """Position of the first matching event in the order they arrived."""
        with self.events.cond:
            for i, e in enumerate(self.events.events):
                if isinstance(e.kind, kind_class) and all(
                    getattr(e.kind, k) == v for k, v in fields.items()
                ):
                    return i
        raise AssertionError(f"no {kind_class.__name__} {fields}")

    def carrying(self, stream_id):
        """Providers whose adapter was asked to start or join `stream_id` and not left since (a
        scripted failure counts as a call: use it where no start or join failed)."""
        on = set()
        with self.journal.cond:
            for provider, method, s in self.journal.calls:
                if s == stream_id and method in ("start", "join"):
                    on.add(provider)
                elif s == stream_id and method == "leave":
                    on.discard(provider)
        return on


@contextlib.asynccontextmanager
async def engines(*list_):
    try:
        yield list_
    finally:
        for e in list_:
            await e.manager.shutdown()


def fatal(detail="revoked"):
    return ProviderError.Unauthorized(detail)


def test_a_viewer_joins_where_the_publisher_is_not_where_it_prefers(real_registry, run):
    # agora is everyone's preferred provider, but it refuses this publisher.
    pub = Engine(real_registry.base_url, scripts={"agora": {"start": [fatal()]}})
    viewer = Engine(real_registry.base_url)

    async def scenario():
        async with engines(pub, viewer):
            assert (await pub.manager.start_stream("cam")).provider == "zegocloud"
            claim = pub.events.expect(EventKind.PLACEMENT_CHANGED, stream_id="cam")
            assert (claim.provider, claim.epoch, claim.live) == ("zegocloud", 1, True)
            placed = real_registry.placement("cam")
            assert (placed["provider"], placed["epoch"], placed["live"]) == ("zegocloud", 1, True)

            joined = await viewer.manager.join_stream("cam")
            assert joined.provider == "zegocloud"
            assert joined.state == SessionState.LIVE
            assert viewer.journal.count("agora", "join") == 0, viewer.journal.calls
            assert viewer.carrying("cam") == {"zegocloud"}

    run(scenario())


def test_a_viewer_joins_where_the_publisher_is_when_the_preferred_provider_was_full(run):
    # agora holds one stream at most and another client's stream fills it: the publisher starts
    # on zegocloud. That stream ends before the viewer comes, so agora has room for the viewer,
    # which still joins zegocloud, where the stream is.
    providers = [dict(p, maxStreams=1) if p["name"] == "agora" else p for p in PROVIDERS]
    registry = RealRegistry(registry_binary(), providers)
    other = dict(provider="agora", streamId="other", clientId="another-app")
    try:
        registry.telemetry(type="start", **other)
        pub = Engine(registry.base_url)
        viewer = Engine(registry.base_url)

        async def scenario():
            async with engines(pub, viewer):
                assert (await pub.manager.start_stream("cam")).provider == "zegocloud"
                assert pub.journal.count("agora", "start") == 0
                registry.telemetry(type="end", **other)
                _, body = registry.request("GET", "/api/streaming/providers")
                listed = {p["name"]: p for p in body["data"]["providers"]}
                assert listed["agora"]["activeStreams"] == 0
                assert (await viewer.manager.join_stream("cam")).provider == "zegocloud"
                assert viewer.journal.count("agora", "join") == 0, viewer.journal.calls

        run(scenario())
    finally:
        registry.close()


def test_the_viewer_follows_a_publisher_moved_by_its_own_sdk_error(real_registry, run):
    pub = Engine(real_registry.base_url)
    viewer = Engine(real_registry.base_url)

    async def scenario():
        async with engines(pub, viewer):
            assert (await pub.manager.start_stream("cam")).provider == "agora"
            assert (await viewer.manager.join_stream("cam")).provider == "agora"
            started = time.monotonic()
            # Only the publisher's SDK fails on agora: for the viewer, agora stays healthy.
            pub.manager.record_error("cam", fatal("token revoked"))
            moved = pub.events.expect(EventKind.MIGRATION_FINISHED, stream_id="cam")
            assert (moved._from, moved.to) == ("agora", "zegocloud")
            pub.events.expect(EventKind.PLACEMENT_CHANGED, provider="zegocloud", epoch=2)

            seen = viewer.events.expect(EventKind.PLACEMENT_CHANGED, provider="zegocloud")
            assert (seen.stream_id, seen.epoch, seen.live) == ("cam", 2, True)
            why = viewer.events.expect(EventKind.FAILOVER, stream_id="cam")
            assert why.reason == FailoverReason.PLACEMENT_CHANGED
            followed = viewer.events.expect(EventKind.MIGRATION_FINISHED, stream_id="cam")
            assert (followed._from, followed.to) == ("agora", "zegocloud")
            assert viewer.index_of(EventKind.PLACEMENT_CHANGED, provider="zegocloud") < viewer.index_of(
                EventKind.MIGRATION_FINISHED, stream_id="cam"
            )
            assert time.monotonic() - started < WAIT
            assert viewer.manager.session("cam").provider == "zegocloud"
            assert viewer.carrying("cam") == {"zegocloud"}
            assert pub.carrying("cam") == {"zegocloud"}
            assert real_registry.placement("cam")["provider"] == "zegocloud"

    run(scenario())


def test_a_second_publisher_of_a_live_stream_gets_stream_claimed_by_other(real_registry, run):
    first = Engine(real_registry.base_url)
    second = Engine(real_registry.base_url)

    async def scenario():
        async with engines(first, second):
            await first.manager.start_stream("cam")
            with pytest.raises(StreamguardError.StreamClaimedByOther) as err:
                await second.manager.start_stream("cam")
            assert err.value.stream_id == "cam"
            assert "'cam'" in str(err.value) and "StreamClaimedByOther" in repr(err.value)
            assert second.manager.session("cam").state == SessionState.FAILED
            # What the second publisher started for the claim was left again.
            assert second.carrying("cam") == set(), second.journal.calls
            placed = real_registry.placement("cam")
            assert (placed["provider"], placed["epoch"], placed["live"]) == ("agora", 1, True)
            assert first.manager.session("cam").state == SessionState.LIVE

    run(scenario())


def test_a_viewer_of_a_stream_nobody_publishes_gets_stream_not_live(real_registry, run):
    viewer = Engine(real_registry.base_url)

    async def scenario():
        async with engines(viewer):
            with pytest.raises(StreamguardError.StreamNotLive) as err:
                await viewer.manager.join_stream("nobody")
            assert err.value.stream_id == "nobody"
            assert "'nobody'" in str(err.value) and "StreamNotLive" in repr(err.value)
            assert viewer.journal.count(method="join") == 0

    run(scenario())


def test_a_viewer_without_an_adapter_for_the_placement_gets_a_typed_error(real_registry, run):
    pub = Engine(real_registry.base_url, names=("webrtc",))
    viewer = Engine(real_registry.base_url, names=("agora", "zegocloud"))

    async def scenario():
        async with engines(pub, viewer):
            assert (await pub.manager.start_stream("cam")).provider == "webrtc"
            with pytest.raises(StreamguardError.NoAdapterForPlacement) as err:
                await viewer.manager.join_stream("cam")
            assert (err.value.stream_id, err.value.providers) == ("cam", ["webrtc"])
            assert "'webrtc'" in str(err.value) and "NoAdapterForPlacement" in repr(err.value)
            assert viewer.journal.count(method="join") == 0

    run(scenario())


def test_a_join_with_wait_for_live_joins_once_the_publisher_starts(real_registry, run):
    pub = Engine(real_registry.base_url, scripts={"agora": {"start": [fatal()]}})
    viewer = Engine(real_registry.base_url, wait_for_live_ms=20_000)

    async def scenario():
        async with engines(pub, viewer):
            join = asyncio.ensure_future(viewer.manager.join_stream("cam"))
            # It waits: not failed with StreamNotLive, not joined anywhere.
            done, _ = await asyncio.wait({join}, timeout=0.8)
            assert not done and viewer.journal.count(method="join") == 0
            started = time.monotonic()
            await pub.manager.start_stream("cam")
            joined = await asyncio.wait_for(join, WAIT)
            # Woken by the placement push (the fallback re-reads every second).
            assert time.monotonic() - started < 5.0
            assert joined.provider == "zegocloud"
            assert viewer.journal.count("agora", "join") == 0

    run(scenario())


def test_wait_for_live_runs_out_with_stream_not_live(real_registry, run):
    viewer = Engine(real_registry.base_url, wait_for_live_ms=600)

    async def scenario():
        async with engines(viewer):
            started = time.monotonic()
            with pytest.raises(StreamguardError.StreamNotLive):
                await viewer.manager.join_stream("cam")
            assert 0.5 <= time.monotonic() - started < 5.0

    run(scenario())


def test_a_hot_standby_is_listed_and_promoted_when_the_primary_fails(real_registry, run):
    pub = Engine(real_registry.base_url, parallel=True, standby_providers=1)
    viewer = Engine(real_registry.base_url, parallel=True)

    async def scenario():
        async with engines(pub, viewer):
            assert (await pub.manager.start_stream("cam")).provider == "agora"
            listed = pub.events.expect(EventKind.PLACEMENT_CHANGED, standby=["zegocloud"])
            assert (listed.provider, listed.live) == ("agora", True)
            placed = real_registry.placement("cam")
            assert (placed["provider"], placed["standby"]) == ("agora", ["zegocloud"])
            assert placed["epoch"] == listed.epoch
            assert pub.manager.session("cam").standby == ["zegocloud"]
            stats = {s.provider: s for s in pub.manager.provider_stats()}
            assert stats["zegocloud"].standby_sessions == 1
            assert stats["agora"].standby_sessions == 0
            assert pub.carrying("cam") == {"agora", "zegocloud"}

            assert (await viewer.manager.join_stream("cam")).provider == "agora"
            # The primary dies for the publisher: the standby already carries the stream.
            pub.manager.record_error("cam", fatal("primary lost"))
            promoted = pub.events.expect(EventKind.STANDBY_PROMOTED, stream_id="cam")
            assert (promoted._from, promoted.to) == ("agora", "zegocloud")
            assert promoted.epoch > listed.epoch
            # Promoted without a second start on zegocloud.
            assert pub.journal.count("zegocloud", "start", "cam") == 1
            assert pub.manager.session("cam").provider == "zegocloud"

            followed = viewer.events.expect(EventKind.MIGRATION_FINISHED, stream_id="cam")
            assert (followed._from, followed.to) == ("agora", "zegocloud")
            assert viewer.carrying("cam") == {"zegocloud"}
            # The publisher keeps one standby: the next provider, listed in a later claim.
            relisted = pub.events.expect(EventKind.PLACEMENT_CHANGED, provider="zegocloud", standby=["webrtc"])
            assert relisted.epoch > promoted.epoch
            assert real_registry.placement("cam")["standby"] == ["webrtc"]

    run(scenario())


def test_without_standby_providers_nothing_is_kept_in_standby(real_registry, run):
    pub = Engine(real_registry.base_url, parallel=True)

    async def scenario():
        async with engines(pub):
            await pub.manager.start_stream("cam")
            assert real_registry.placement("cam")["standby"] == []
            assert pub.manager.session("cam").standby == []
            assert pub.carrying("cam") == {"agora"}

    run(scenario())


def test_ending_the_stream_ends_the_placement(real_registry, run):
    pub = Engine(real_registry.base_url)
    viewer = Engine(real_registry.base_url)

    async def scenario():
        async with engines(pub, viewer):
            await pub.manager.start_stream("cam")
            await pub.manager.end_stream("cam")
            # The release runs in the background: wait (bounded) for the registry to see it.
            assert until(lambda: real_registry.placement("cam")["live"] is False)
            with pytest.raises(StreamguardError.StreamNotLive):
                await viewer.manager.join_stream("cam")

    run(scenario())


def test_a_viewer_moves_to_the_standby_at_once_on_its_own_error(real_registry, run):
    pub = Engine(real_registry.base_url, parallel=True, standby_providers=1)
    viewer = Engine(real_registry.base_url, parallel=True)

    async def scenario():
        async with engines(pub, viewer):
            await pub.manager.start_stream("cam")
            pub.events.expect(EventKind.PLACEMENT_CHANGED, standby=["zegocloud"])
            assert (await viewer.manager.join_stream("cam")).provider == "agora"
            # A transient error of the viewer's own player: alone it would only start a check.
            viewer.manager.record_error("cam", ProviderError.Network("player stalled"))
            moved = viewer.events.expect(EventKind.MIGRATION_FINISHED, stream_id="cam")
            assert (moved._from, moved.to) == ("agora", "zegocloud")
            assert viewer.carrying("cam") == {"zegocloud"}
            # The publisher did not move: its placement is unchanged.
            assert pub.manager.session("cam").provider == "agora"
            assert real_registry.placement("cam")["provider"] == "agora"

    run(scenario())


def test_a_viewer_without_a_standby_stays_with_its_publisher_then_follows_it(real_registry, run):
    pub = Engine(real_registry.base_url)
    viewer = Engine(real_registry.base_url)

    async def scenario():
        async with engines(pub, viewer):
            await pub.manager.start_stream("cam")
            await viewer.manager.join_stream("cam")
            # The viewer's own SDK rejects agora, where the stream still is: it does not wander
            # to a provider that does not carry the stream; it reports and stays.
            viewer.manager.record_error("cam", fatal("viewer-side failure"))
            failed = viewer.events.expect(EventKind.MIGRATION_FAILED, stream_id="cam")
            assert failed.still_on == "agora"
            session = viewer.manager.session("cam")
            assert (session.state, session.provider) == (SessionState.LIVE, "agora")
            assert viewer.journal.count("zegocloud", "join") + viewer.journal.count("webrtc", "join") == 0
            # The publisher moves: the viewer follows.
            pub.manager.record_error("cam", fatal("publisher-side failure"))
            followed = viewer.events.expect(EventKind.MIGRATION_FINISHED, stream_id="cam")
            assert (followed._from, followed.to) == ("agora", "zegocloud")
            assert viewer.carrying("cam") == {"zegocloud"}

    run(scenario())


def test_the_viewer_follows_by_the_registry_push_without_polling(real_registry, run):
    pub = Engine(real_registry.base_url)
    # The viewer re-reads nothing for a minute: only the registry's push (its `placement` event
    # on the event stream, filtered to the streams the viewer watches) can move it in time.
    viewer = Engine(real_registry.base_url, provider_refresh_interval_ms=60_000)

    async def scenario():
        async with engines(pub, viewer):
            await pub.manager.start_stream("cam")
            await viewer.manager.join_stream("cam")
            # The push channel connects in the background, and a move before it is up would
            # only be seen by the next poll. A new provider is pushed to every subscriber: the
            # viewer re-reading the list at once shows its channel is up (the list it reports
            # names only providers it has adapters for, so it looks the same).
            lists = len(viewer.events.of(EventKind.PROVIDER_LIST_CHANGED))
            new = {"name": "livekit", "priority": 10, "config": {}}
            status, _ = real_registry.request("POST", "/api/streaming/providers", new, SUPER)
            assert status == 201
            assert viewer.events.wait_for(
                lambda: len(viewer.events.of(EventKind.PROVIDER_LIST_CHANGED)) > lists, 5.0
            )
            started = time.monotonic()
            pub.manager.record_error("cam", fatal("token revoked"))
            followed = viewer.events.expect(EventKind.MIGRATION_FINISHED, stream_id="cam", timeout=5.0)
            assert followed.to == "zegocloud"
            assert time.monotonic() - started < 5.0

    run(scenario())
