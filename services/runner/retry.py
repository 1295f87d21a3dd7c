"""RetryingServerAppIo: rides out a SuperLink restart so a run survives it.

Every ServerAppIo call that fails with UnavailableError is tried again with exponential
backoff until it has failed for `max_wait_time` seconds in a row. That is safe because the
SuperLink keeps runs and messages in its database and message ids are chosen by the
sender, so a push that is repeated stores nothing twice. The wrapper sits between the grid
and the transport: the grid stays transport-agnostic, and simulation does without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from stamen.codec.envelope import Envelope
from stamen.common.errors import UnavailableError
from stamen.common.records import UserConfig
from stamen.transport.api import ServerAppIoApi
from stamen.transport.types import Node, PushResult, Run

__all__ = ["Backoff", "RetryingServerAppIo"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Chunk = bytes | bytearray | memoryview


class Backoff:
    """Delays that double from `initial` up to `maximum`, within `max_wait_time` in all.

    One instance follows one streak of failures: `next_delay()` says how long to wait
    before the next try, or raises once the streak has lasted `max_wait_time`.
    """

    def __init__(self, max_wait_time: float, initial: float = 0.25, maximum: float = 5.0) -> None:
        self._max_wait_time = max_wait_time
        self._initial = initial
        self._maximum = maximum
        self._delay = initial
        self._deadline: float | None = None

    def next_delay(self, what: str, error: UnavailableError) -> float:
        now = asyncio.get_running_loop().time()
        if self._deadline is None:
            self._deadline = now + self._max_wait_time
        remaining = self._deadline - now
        if remaining <= 0:
            raise UnavailableError(
                f"the SuperLink stayed unreachable for {self._max_wait_time:g}s ({what}): {error}"
            ) from error
        delay = min(self._delay, remaining)
        self._delay = min(self._delay * 2, self._maximum)
        return delay

    @property
    def failing(self) -> bool:
        return self._deadline is not None


class RetryingServerAppIo:
    """A ServerAppIoApi that retries the calls of `inner` while the SuperLink is unavailable."""

    def __init__(
        self,
        inner: ServerAppIoApi,
        *,
        max_wait_time: float = 60.0,
        initial_delay: float = 0.25,
        max_delay: float = 5.0,
    ) -> None:
        self._inner = inner
        self._backoff = partial(Backoff, max_wait_time, initial_delay, max_delay)

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        backoff = self._backoff()
        while True:
            try:
                result = await call()
            except UnavailableError as exc:
                delay = backoff.next_delay(what, exc)
                logger.warning(
                    "SuperLink unavailable (%s): %s; retrying in %.2gs", what, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            if backoff.failing:
                logger.info("SuperLink reachable again (%s)", what)
            return result

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        return await self._retry(
            "create_run", partial(self._inner.create_run, server_app, client_app, run_config)
        )

    async def get_run(self, run_id: int) -> Run:
        return await self._retry("get_run", partial(self._inner.get_run, run_id))

    async def get_nodes(self, run_id: int) -> list[Node]:
        return await self._retry("get_nodes", partial(self._inner.get_nodes, run_id))

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        return await self._retry(
            "push_messages", partial(self._inner.push_messages, run_id, envelopes)
        )

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        return await self._retry(
            "pull_messages", partial(self._inner.pull_messages, run_id, message_ids, timeout)
        )

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Chunk]
    ) -> bool:
        call = partial(self._inner.push_object, run_id, object_id, total_size, chunks)
        if isinstance(chunks, AsyncIterator):
            return await call()  # a one-shot stream cannot be sent again
        return await self._retry("push_object", call)

    async def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Chunk]:
        """The object's chunks; after a broken stream, a new one resumes where it broke."""
        backoff = self._backoff()
        received = 0
        while True:
            stream = self._inner.pull_object(run_id, object_id)
            skip = received
            delay = 0.0
            try:
                async for chunk in stream:
                    view = memoryview(chunk).cast("B")
                    if skip >= len(view):
                        skip -= len(view)
                        continue
                    view, skip = view[skip:], 0
                    received += len(view)
                    if backoff.failing:
                        backoff = self._backoff()
                    yield view
                return
            except UnavailableError as exc:
                delay = backoff.next_delay("pull_object", exc)
                logger.warning(
                    "SuperLink unavailable (pull_object): %s; retrying in %.2gs", exc, delay
                )
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            await asyncio.sleep(delay)

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        await self._retry(
            "update_run_status",
            partial(self._inner.update_run_status, run_id, status, sub_status, details),
        )

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        await self._retry(
            "report_round",
            partial(self._inner.report_round, run_id, server_round, seconds, metrics),
        )
