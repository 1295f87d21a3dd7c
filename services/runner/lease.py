"""RunLease: the runner's hold on the run it drives.

The runner takes the run's lease from the SuperLink before it drives the run and renews
it every third of its duration while the ServerApp works (between rounds too: a long
aggregation or centralized evaluation makes no other call). The SuperLink refuses the
lease to a second runner, and marks the run failed when its runner stops renewing, so a
dead runner no longer leaves its run running forever. The SuperLink's side is
`stamen.superlink.leases`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stamen.common.errors import RunNotRunningError, StamenError
from stamen.transport.api import ServerAppIoApi

__all__ = ["RunLease"]

logger = logging.getLogger(__name__)


class RunLease:
    """The lease on `run_id` of this runner (one random holder id per runner)."""

    def __init__(self, serverappio: ServerAppIoApi, run_id: int) -> None:
        self._io = serverappio
        self.run_id = run_id
        self.holder = uuid.uuid4().hex
        self._seconds = 0.0

    async def take(self) -> None:
        """Take the lease; RunLeaseHeldError when another runner drives the run."""
        self._seconds = await self._io.renew_run_lease(self.run_id, self.holder)

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease in the background while the block runs."""
        body_error: BaseException | None = None
        async with asyncio.TaskGroup() as tg:
            renewing = tg.create_task(self._renew())
            try:
                yield
            except BaseException as exc:  # raised below as itself, not in an ExceptionGroup
                body_error = exc
            finally:
                renewing.cancel()
        if body_error is not None:
            raise body_error

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._seconds / 3)
            try:
                self._seconds = await self._io.renew_run_lease(self.run_id, self.holder)
            except RunNotRunningError:
                return  # finished from outside: the ServerApp's next call says so
            except StamenError as exc:
                logger.error(
                    "run %d: the lease cannot be renewed: %s",
                    self.run_id,
                    exc,
                    extra={"run_id": self.run_id},
                )
                return
