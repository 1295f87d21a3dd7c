"""Graceful shutdown for gRPC servers: refuse new calls, end long-polls, then the rest.

grpclib's `Server.close()` cancels every running call at once and sends the callers no
status, so they wait for their deadline. The servicers therefore run each call inside
`Drain.call()`: `close()` refuses new calls (`UNAVAILABLE`, which clients retry with
backoff), ends waiting long-polls early with an empty answer (always a valid answer to a
poll) and reports NOT_SERVING to health checks; the owner awaits `idle()` up to its grace
period, and `abort()` ends the calls still running with `UNAVAILABLE` before it closes
the servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from grpclib.health.check import ServiceStatus

from stamen.common.errors import UnavailableError

__all__ = ["Drain"]

T = TypeVar("T")


@asynccontextmanager
async def _scope(scopes: set[asyncio.Timeout]) -> AsyncIterator[asyncio.Timeout]:
    """A cancel scope that others can end by rescheduling it to now."""
    async with asyncio.timeout(None) as scope:
        scopes.add(scope)
        try:
            yield scope
        finally:
            scopes.discard(scope)


def _end_now(scopes: set[asyncio.Timeout]) -> None:
    now = asyncio.get_running_loop().time()
    for scope in scopes:
        scope.reschedule(now)


class Drain:
    """The calls in flight on a set of servers, and whether they still take new ones."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._calls: set[asyncio.Timeout] = set()
        self._polls: set[asyncio.Timeout] = set()
        self.health = ServiceStatus()
        """The health check that goes NOT_SERVING when the drain starts."""
        self.health.set(True)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def calls(self) -> int:
        """How many calls are in flight."""
        return self._count

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Count a call while it runs: refused once the drain started, ended by `abort()`."""
        if self._closing:
            raise UnavailableError("the server is shutting down")
        self._count += 1
        self._idle.clear()
        try:
            async with _scope(self._calls) as scope:
                yield
        except TimeoutError:
            if scope.expired():
                raise UnavailableError("the server shut down before this call finished") from None
            raise
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def long_poll(self, poll: Awaitable[T], empty: T) -> T:
        """Await `poll`, or return `empty` as soon as the drain starts."""
        try:
            async with _scope(self._polls) as scope:
                if self._closing:
                    scope.reschedule(asyncio.get_running_loop().time())
                return await poll
        except TimeoutError:
            if scope.expired():
                return empty
            raise

    def close(self) -> None:
        """Start draining: refuse new calls, end long-polls, report NOT_SERVING."""
        if not self._closing:
            self._closing = True
            self.health.set(False)
            _end_now(self._polls)

    def abort(self) -> None:
        """End every call still in flight with UNAVAILABLE (after `close()`)."""
        self.close()
        _end_now(self._calls)

    async def idle(self) -> None:
        """Return once no call is in flight."""
        await self._idle.wait()
