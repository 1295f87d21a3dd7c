"""Helpers for tests of ClientApp worker processes (the pool and the SuperNode's executor).

A task that must be seen running calls back to `task_started()`'s port from the worker;
`our_processes()` and `our_segments()` check that nothing is left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import psutil
from stamen.client.task import AppResult


class HasSegments(Protocol):
    @property
    def segment_prefix(self) -> str: ...


async def outcome(call: Awaitable[AppResult]) -> AppResult | BaseException:
    """The call's result, or what it raised."""
    try:
        return await call
    except Exception as exc:
        return exc


def our_processes() -> set[int]:
    """Child processes, less the resource tracker that multiprocessing keeps for good."""
    children = psutil.Process().children(recursive=True)
    return {p.pid for p in children if "resource_tracker" not in " ".join(p.cmdline())}


def our_segments(owner: HasSegments) -> list[str]:
    """The shared-memory segments a pool (or executor) has in /dev/shm now."""
    return [path.name for path in Path("/dev/shm").glob(f"{owner.segment_prefix}*")]


@asynccontextmanager
async def task_started() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A loopback port and the event set once a task in a worker connects to it."""
    started = asyncio.Event()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started.set()
        writer.close()

    async with await asyncio.start_server(on_connect, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1], started
