"""RetryingServerAppIo: rides out a SuperLink restart or fault so a run survives it.

Every ServerAppIo call that fails with a `TransientError` (unreachable, `INTERNAL`,
`UNAVAILABLE`, `RESOURCE_EXHAUSTED` such as a full disk, a deadline) is tried again with
exponential backoff, by default for as long as it takes (`max_wait_time` bounds one
outage). One outage is logged once when it begins and once when it ends. Retrying is safe
because the SuperLink keeps runs and messages in its database and message ids are chosen
by the sender, so a push that is repeated stores nothing twice. Errors that retrying
cannot mend (a refused certificate or credential, an unknown run) pass through at once.
The wrapper sits between the grid and the transport: the grid stays transport-agnostic,
and simulation does without it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from stamen.codec.envelope import Envelope
from stamen.common.backoff import Backoff, Outage
from stamen.common.errors import TransientError
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run
from stamen.transport.api import ServerAppIoApi

__all__ = ["RetryingServerAppIo"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Chunk = bytes | bytearray | memoryview


class _Streak:
    """One outage as one call sees it: logs its start and end once, waits out the backoff."""

    def __init__(self, retrying: RetryingServerAppIo, what: str) -> None:
        self._retrying = retrying
        self._what = what
        self._outage: Outage | None = None

    async def wait(self, error: TransientError) -> None:
        """Wait before the next try; raises UnavailableError once the outage is too long."""
        loop = asyncio.get_running_loop()
        if self._outage is None:
            logger.warning("the SuperLink failed %s: %s; retrying with backoff", self._what, error)
            self._outage = self._retrying.outage(loop.time())
        delay = self._outage.next_delay(loop.time(), f"{self._what}: {error}")
        logger.debug("retrying %s in %.2fs (retry %d)", self._what, delay, self._outage.retries)
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        if self._outage is not None:
            logger.info(
                "the SuperLink answers %s again after %.1fs",
                self._what,
                asyncio.get_running_loop().time() - self._outage.started_at,
            )
            self._outage = None


class RetryingServerAppIo:
    """A ServerAppIoApi that retries the calls of `inner` while the SuperLink fails
    transiently: for at most `max_wait_time` seconds in a row (None: without end)."""

    def __init__(
        self,
        inner: ServerAppIoApi,
        *,
        max_wait_time: float | None = None,
        initial_delay: float = 0.25,
        max_delay: float = 5.0,
    ) -> None:
        self._inner = inner
        self._max_wait_time = max_wait_time
        self._backoff = Backoff(initial=initial_delay, maximum=max_delay)

    def outage(self, now: float) -> Outage:
        return Outage(
            self._backoff, started_at=now, max_wait_time=self._max_wait_time, rng=random.Random()
        )

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        streak = _Streak(self, what)
        while True:
            try:
                result = await call()
            except TransientError as exc:
                await streak.wait(exc)
                continue
            streak.succeeded()
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
        streak = _Streak(self, "pull_object")
        received = 0
        while True:
            stream = self._inner.pull_object(run_id, object_id)
            skip = received
            failure: TransientError | None = None
            try:
                async for chunk in stream:
                    view = memoryview(chunk).cast("B")
                    if skip >= len(view):
                        skip -= len(view)
                        continue
                    view, skip = view[skip:], 0
                    received += len(view)
                    streak.succeeded()
                    yield view
                return
            except TransientError as exc:
                failure = exc
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            await streak.wait(failure)

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        await self._retry(
            "update_run_status",
            partial(self._inner.update_run_status, run_id, status, sub_status, details),
        )

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        return await self._retry(
            "renew_run_lease", partial(self._inner.renew_run_lease, run_id, holder)
        )

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        return await self._retry(
            "push_checkpoint", partial(self._inner.push_checkpoint, run_id, envelope)
        )

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        return await self._retry("pull_checkpoint", partial(self._inner.pull_checkpoint, run_id))

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        await self._retry(
            "report_round",
            partial(self._inner.report_round, run_id, server_round, seconds, metrics),
        )
