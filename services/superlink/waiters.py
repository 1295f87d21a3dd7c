"""Waiters: long-poll pulls wait here, keyed by node or run, until woken or their bound.

A pull checks the state, and when there is nothing for it waits on its key; whoever
makes something available for that key calls `wake(key)`. Checking and starting to wait
happen without an `await` in between, so no wake-up is lost on the single event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Waiters"]

K = TypeVar("K", bound=Hashable)


class Waiters(Generic[K]):
    def __init__(self) -> None:
        self._waiting: dict[K, set[asyncio.Future[None]]] = {}

    async def wait(self, key: K, deadline: float) -> None:
        """Return when `key` is woken or at `deadline` (event loop time), whichever is first."""
        future = asyncio.get_running_loop().create_future()
        futures = self._waiting.setdefault(key, set())
        futures.add(future)
        try:
            async with asyncio.timeout_at(deadline):
                await future
        except TimeoutError:
            pass
        finally:
            futures.discard(future)
            if not futures and self._waiting.get(key) is futures:
                del self._waiting[key]

    def wake(self, key: K) -> None:
        for future in self._waiting.pop(key, ()):
            if not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        for key in list(self._waiting):
            self.wake(key)
