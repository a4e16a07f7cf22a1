"""Streamguard: a failover engine for live streaming (Python bindings of the Rust engine).

Wrap each vendor SDK in a :class:`ProviderAdapter`; the :class:`StreamingProviderManager`
decides which provider carries each stream: retries with jittered backoff, priority failover,
health monitoring, live migration, cool-downs, and an event for every decision::

    import asyncio
    from streamguard import (ManagerConfig, ProviderAdapter, ProviderError,
                             StreamingProviderManager)

    class AgoraAdapter(ProviderAdapter):
        async def initialize(self, provider):        # provider.config_json: registry config
            ...
        async def start_stream(self, stream_id):
            raise ProviderError.Timeout("join timed out")   # retried, then next provider
        async def join_stream(self, stream_id): ...
        async def leave_stream(self, stream_id): ...
        # Optional: async def probe(self) (default: not supported),
        # def supports_parallel_sessions(self) (default: False) and
        # async def set_quality(self, stream_id, level) (default: not supported).

    async def main():
        config = ManagerConfig(base_url="https://api.example.com/api")
        async with StreamingProviderManager(config) as manager:   # shut down on exit
            manager.register_adapter("agora", AgoraAdapter())
            events = manager.events()        # subscribed now: no later event is missed
            session = await manager.start_stream("stream-42")
            async for event in events:       # ends when the manager shuts down
                ...
            await manager.end_stream("stream-42")

Cancellation. ``start_stream``, ``join_stream`` and ``refresh_providers`` are cancellable:
cancelling the awaiting task (``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``)
cancels the operation as ``end_stream`` would, and a provider that comes up late is left.
``end_stream`` and ``shutdown`` run to completion even if their await is cancelled.

Event loops. Awaiting a manager method uses the event loop of the awaiting code, as usual.
Adapter coroutines are different: the engine calls them from its own threads (health checks,
migrations, retries), where no event loop runs. They run on the loop passed to
:func:`uniffi_set_event_loop` if one was set (it must keep running), otherwise on a
background event loop that this package starts on first use, in a daemon thread named
``streamguard-asyncio``. So async adapters work with no setup; set a loop only when adapter
code must run on the app's own loop (objects bound to it). Keep adapters non-blocking: a
blocking call stalls every adapter that shares the loop.

Shut managers down with ``await manager.shutdown()``. Managers still running when the
interpreter exits are shut down by an ``atexit`` hook of this package (leaving every provider),
because an engine thread that calls into a finalizing interpreter aborts the process.
"""

import asyncio
import atexit
import threading
import weakref

from ._uniffi import streamguard as _ffi

# The generated API, by name (not `import *`, so that mypy sees the StreamingProviderManager
# defined below, a subclass of the generated one). A test checks that nothing generated is left
# out.
from ._uniffi.streamguard import (
    Attempt,
    EventKind,
    EventListener,
    EventListenerImpl,
    EventSubscription,
    EventSubscriptionProtocol,
    FailoverReason,
    HealthStatus,
    InternalError,
    ListenerError,
    ListenerHandle,
    ListenerHandleProtocol,
    ManagerConfig,
    MigrationStrategy,
    Operation,
    ProviderAdapter,
    ProviderAdapterImpl,
    ProviderError,
    ProviderErrorKind,
    ProviderInfo,
    ProviderStats,
    QualityBand,
    QualityLevel,
    QualitySample,
    Role,
    SessionInfo,
    SessionState,
    StreamEvent,
    StreamguardError,
    StreamingProviderManagerProtocol,
    default_manager_config,
    uniffi_set_event_loop,
)

# Everything generated but quiesce() (internal: the exit hook below), and EventStream. A literal
# list, so mypy knows what is exported.
__all__ = [
    "Attempt",
    "EventKind",
    "EventListener",
    "EventListenerImpl",
    "EventStream",
    "EventSubscription",
    "EventSubscriptionProtocol",
    "FailoverReason",
    "HealthStatus",
    "InternalError",
    "ListenerError",
    "ListenerHandle",
    "ListenerHandleProtocol",
    "ManagerConfig",
    "MigrationStrategy",
    "Operation",
    "ProviderAdapter",
    "ProviderAdapterImpl",
    "ProviderError",
    "ProviderErrorKind",
    "ProviderInfo",
    "ProviderStats",
    "QualityBand",
    "QualityLevel",
    "QualitySample",
    "Role",
    "SessionInfo",
    "SessionState",
    "StreamEvent",
    "StreamguardError",
    "StreamingProviderManager",
    "StreamingProviderManagerProtocol",
    "default_manager_config",
    "uniffi_set_event_loop",
]

# The generated module's hooks this file replaces. Checked at import so a UniFFI upgrade that
# renames them fails loudly instead of silently losing the behaviour documented above.
for _name in (
    "_uniffi_get_event_loop",
    "_UNIFFI_GLOBAL_EVENT_LOOP",
    "_UNIFFI_FOREIGN_FUTURE_DROPPED_CALLBACK",
    "_UNIFFI_FOREIGN_FUTURE_HANDLE_MAP",
    "_uniffi_future_dropped_callback",
):
    if not hasattr(_ffi, _name):
        raise ImportError(f"streamguard: generated bindings lack {_name}; update __init__.py")

_background_lock = threading.Lock()
_background_loop = None


def _background_event_loop():
    """The package's own event loop, started on first use in a daemon thread."""
    global _background_loop
    with _background_lock:
        if _background_loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="streamguard-asyncio", daemon=True
            ).start()
            _background_loop = loop
        return _background_loop


def _event_loop():
    # UniFFI asks for a loop both when Python awaits Rust (a loop is running in this thread:
    # use it) and when Rust calls an async adapter method from an engine thread (no loop runs
    # there: UniFFI's own lookup would raise, so use the configured or the background loop).
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    loop = _ffi._UNIFFI_GLOBAL_EVENT_LOOP
    if loop is not None and not loop.is_closed():
        return loop
    return _background_event_loop()


_ffi._uniffi_get_event_loop = _event_loop


@_ffi._UNIFFI_FOREIGN_FUTURE_DROPPED_CALLBACK
def _foreign_future_dropped(handle):
    # Rust dropped an adapter call (adapter_timeout_ms passed, or the operation was cancelled).
    # UniFFI's version schedules the cancellation with loop.call_soon from an engine thread,
    # which does not wake an idle loop: a hung coroutine would linger until the loop's next
    # event. concurrent.futures.Future.cancel() is thread-safe and wakes the loop.
    (_loop, future) = _ffi._UNIFFI_FOREIGN_FUTURE_HANDLE_MAP.remove(handle)
    future.cancel()


_ffi._uniffi_future_dropped_callback = _foreign_future_dropped


async def _probe_not_supported(self):
    raise ProviderError.NotSupported("probe")


def _no_parallel_sessions(self):
    return False


async def _set_quality_not_supported(self, stream_id, level):
    raise ProviderError.NotSupported("set_quality")


# The engine's trait has defaults for these three; give Python adapters the same, so one that
# does not define them is not reported as failing every health check.
_probe_not_supported.__doc__ = ProviderAdapter.probe.__doc__
_no_parallel_sessions.__doc__ = ProviderAdapter.supports_parallel_sessions.__doc__
_set_quality_not_supported.__doc__ = ProviderAdapter.set_quality.__doc__
ProviderAdapter.probe = _probe_not_supported
ProviderAdapter.supports_parallel_sessions = _no_parallel_sessions
ProviderAdapter.set_quality = _set_quality_not_supported


class EventStream:
    """The events of a manager as an async iterator: ``async for event in manager.events()``.

    Subscribed when created, so no event emitted after ``events()`` returned is missed. Ends
    when the manager shuts down (after the events emitted before) or on :meth:`aclose`. Events
    are read on demand: a consumer more than ``event_buffer`` events behind loses the oldest.
    """

    def __init__(self, subscription: EventSubscription) -> None:
        self._subscription = subscription

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> StreamEvent:
        event = await self._subscription.next()
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """End the stream: a pending and every later iteration stops."""
        self._subscription.close()

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _printable_records() -> None:
    # Generated records are dataclasses without annotated fields, so their generated __repr__
    # is "Attempt()", and errors format their fields with {!r}: an AllAttemptsFailed printed
    # as "attempts=[Attempt(), Attempt()]". Their __str__ has the contents ("Attempt(provider=
    # agora, number=1, ...)"): use it for repr too, for records and enum variants (EventKind.*).
    # A ManagerConfig keeps its token redacted: its __str__ is the engine's redacting Display.
    classes = [c for c in vars(_ffi).values() if isinstance(c, type)]
    classes += [v for c in classes for v in vars(c).values() if isinstance(v, type)]
    for cls in classes:
        generated = cls.__module__ == _ffi.__name__
        if generated and not issubclass(cls, BaseException) and "__str__" in vars(cls):
            cls.__repr__ = cls.__str__  # type: ignore[method-assign]


_printable_records()


# Every manager, weakly, for the exit hook below.
_managers: "weakref.WeakSet[StreamingProviderManager]" = weakref.WeakSet()


class StreamingProviderManager(_ffi.StreamingProviderManager):
    __doc__ = _ffi.StreamingProviderManager.__doc__

    def __init__(self, config: ManagerConfig) -> None:
        super().__init__(config)
        _managers.add(self)

    def events(self) -> EventStream:
        """Every event from this call on, as an async iterator (see :class:`EventStream`)."""
        return EventStream(self.subscribe())

    async def __aenter__(self) -> "StreamingProviderManager":
        """``async with StreamingProviderManager(config) as manager:`` shuts it down on exit."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()




@atexit.register
def _shut_down_live_managers():
    # Python 3.11 ends a thread that enters a finalizing interpreter with pthread_exit, which
    # aborts the process when it unwinds through Rust. So, while the interpreter (and the
    # background loop) still work: shut down the managers still running (shutdown() returns
    # once no engine thread will call into Python again; those already shut down return at
    # once), then wait until the engine thread that resumed the last `await` has returned from
    # that callback (it may still be inside it when the program goes on to exit).
    live = list(_managers)
    if live:

        async def shut_down_all():
            await asyncio.gather(*(m.shutdown() for m in live), return_exceptions=True)

        asyncio.run(shut_down_all())
    _ffi.quiesce()
