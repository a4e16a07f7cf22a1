"""The README's example and an adapter as a user writes them; `mypy --strict` checks this file
against the installed package (test_habits.py::test_mypy_strict_accepts_an_adapter_and_the_example)."""

import asyncio

from streamguard import (
    ManagerConfig,
    ProviderAdapter,
    ProviderError,
    ProviderInfo,
    SessionInfo,
    StreamEvent,
    StreamingProviderManager,
)


class AgoraAdapter(ProviderAdapter):
    async def initialize(self, provider: ProviderInfo) -> None:
        print(provider.config_json)

    async def start_stream(self, stream_id: str) -> None:
        # UniFFI assigns the error variants at run time, where mypy cannot see them.
        raise ProviderError.Timeout("join timed out")  # type: ignore[attr-defined]

    async def join_stream(self, stream_id: str) -> None:
        pass

    async def leave_stream(self, stream_id: str) -> None:
        pass


async def main(base_url: str) -> SessionInfo:
    config = ManagerConfig(base_url=base_url)
    async with StreamingProviderManager(config) as manager:
        manager.register_adapter("agora", AgoraAdapter())
        events = manager.events()
        session = await asyncio.wait_for(manager.start_stream("stream-42"), 10)
        async for event in events:
            seen: StreamEvent = event
            print(seen.at_ms, seen.kind)
            break
        await manager.end_stream("stream-42")
        return session
