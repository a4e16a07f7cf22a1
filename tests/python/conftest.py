"""Fixtures of the Python binding tests: a real provider registry over HTTP on loopback, adapters
written in Python with async methods, and an event recorder. Every wait is bounded and waits on
a condition, never on a fixed sleep."""

import asyncio
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import streamguard
from streamguard import EventListener, ManagerConfig, ProviderAdapter

# Generous bound for anything that should happen within a few check intervals.
WAIT = 10.0


class Watched:
    """A condition variable with a helper that waits for a predicate, bounded."""

    def __init__(self):
        self.cond = threading.Condition()

    def changed(self):
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=WAIT):
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


class Registry(Watched):
    """The backend contract of README.md, served on 127.0.0.1 with switches for the tests."""

    def __init__(self):
        super().__init__()
        self.providers = [
            {"name": "agora", "isActive": True, "priority": 1, "config": {"appId": "a-1"}},
            {"name": "zegocloud", "isActive": True, "priority": 2, "config": {}},
            {"name": "webrtc", "isActive": True, "priority": 3, "config": {}},
        ]
        self.unhealthy = set()
        self.health_requests = {}
        self.list_requests = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                registry.serve(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/api"

    def serve(self, req):
        health = re.fullmatch(r"/api/streaming/providers/([^/]+)/health", req.path)
        with self.cond:
            if req.path == "/api/streaming/providers":
                self.list_requests += 1
                body = {"success": True, "data": {"providers": list(self.providers)}}
            elif health:
                name = health.group(1)
                self.health_requests[name] = self.health_requests.get(name, 0) + 1
                ok = name not in self.unhealthy
                body = {
                    "success": True,
                    "data": {"healthy": ok, "provider": name, "status": "active" if ok else "down"},
                }
            else:
                body = None  # includes /events: no push channel, the engine polls
            self.cond.notify_all()
        data = json.dumps(body).encode() if body is not None else b"not found"
        try:
            req.send_response(200 if body is not None else 404)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the engine dropped a check it no longer needs (stream ended)

    def health_count(self, name):
        with self.cond:
            return self.health_requests.get(name, 0)

    def set_unhealthy(self, name, down=True):
        with self.cond:
            (self.unhealthy.add if down else self.unhealthy.discard)(name)

    def set_providers(self, providers):
        """Serve `providers` (registry JSON objects) from the next list request on."""
        with self.cond:
            self.providers = [dict(p) for p in providers]

    def update(self, name, **fields):
        with self.cond:
            self.providers = [dict(p, **fields) if p["name"] == name else p for p in self.providers]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Journal(Watched):
    """Every adapter call, in order, as (provider, method, stream_id)."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.cancelled = []
        self.threads = set()

    def record(self, *call):
        with self.cond:
            self.calls.append(call)
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def count(self, provider=None, method=None, stream_id=None):
        with self.cond:
            return sum(
                1
                for (p, m, s) in self.calls
                if (provider is None or p == provider)
                and (method is None or m == method)
                and (stream_id is None or s == stream_id)
            )


class ScriptedAdapter(ProviderAdapter):
    """A provider adapter with async methods whose failures are scripted per method: each call
    takes the next item of `script[method]` (an exception to raise, "hang", a threading.Event
    to wait for whatever happens to the call, or None for success); calls past the end of the
    script succeed."""

    def __init__(self, name, journal, parallel=False, **script):
        self.name = name
        self.journal = journal
        self.parallel = parallel
        self.script = {k: list(v) for k, v in script.items()}
        self.configs = []

    async def _call(self, method, stream_id):
        self.journal.record(self.name, method, stream_id)
        steps = self.script.get(method)
        step = steps.pop(0) if steps else None
        if step == "hang":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                with self.journal.cond:
                    self.journal.cancelled.append((self.name, method, stream_id))
                    self.journal.cond.notify_all()
                raise
        elif isinstance(step, threading.Event):
            # An SDK call that cannot be interrupted: it returns once the test sets the event.
            done = asyncio.get_running_loop().run_in_executor(None, step.wait, WAIT)
            while not done.done():
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    pass
        elif step is not None:
            raise step

    async def initialize(self, provider):
        self.configs.append(json.loads(provider.config_json))
        await self._call("initialize", provider.name)

    async def start_stream(self, stream_id):
        await self._call("start", stream_id)

    async def join_stream(self, stream_id):
        await self._call("join", stream_id)

    async def leave_stream(self, stream_id):
        await self._call("leave", stream_id)

    def supports_parallel_sessions(self):
        return self.parallel


class Recorder(EventListener, Watched):
    """Collects every StreamEvent delivered to the listener."""

    def __init__(self):
        Watched.__init__(self)
        self.events = []

    def on_event(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def of(self, kind_class, **fields):
        with self.cond:
            return [
                e.kind
                for e in self.events
                if isinstance(e.kind, kind_class)
                and all(getattr(e.kind, k) == v for k, v in fields.items())
            ]

    def expect(self, kind_class, timeout=WAIT, **fields):
        """Wait for an event of `kind_class` whose fields match; return its kind."""
        if not self.wait_for(lambda: self.of(kind_class, **fields), timeout):
            with self.cond:
                seen = "\n  ".join(str(e.kind) for e in self.events)
            raise AssertionError(f"no {kind_class.__name__} {fields} within {timeout}s; saw:\n  {seen}")
        return self.of(kind_class, **fields)[0]


def fast_config(base_url, **overrides):
    """Short intervals so every scenario runs in real time within a second or two."""
    values = dict(
        base_url=base_url,
        health_check_interval_ms=300,
        suspect_recheck_delay_ms=100,
        provider_refresh_interval_ms=300,
        backoff_base_ms=20,
        backoff_cap_ms=50,
        request_timeout_ms=2000,
        adapter_timeout_ms=3000,
    )
    values.update(overrides)
    return ManagerConfig(**values)


@pytest.fixture
def registry():
    r = Registry()
    yield r
    r.close()


@pytest.fixture
def journal():
    return Journal()


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def run():
    """Run a scenario coroutine on a fresh event loop (the test's own, as an app would)."""

    def runner(coro):
        return asyncio.run(coro)

    return runner


def elapsed(since):
    return time.monotonic() - since
