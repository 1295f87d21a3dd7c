"""The two ways a SuperNode runs its ClientApp: a warm worker process, or a thread.

`WorkerProcessExecutor` (the default, `--isolation process`) keeps one spawned worker
that imported the app once and serves tasks one at a time: a `WorkerPool` of one worker,
the machinery that runs a simulation's ClientApps. Large objects (a model's arrays) cross
to the worker and back through shared memory, not a pickle down a pipe. A worker that
dies (segfault, OOM kill, `sys.exit`, SIGKILL) turns into a `WorkerDiedError` for the
task it was running, and a fresh worker starts importing at once for the next task. The
app gets the machine's default threading (a simulation's workers get one CPU's share).

`ThreadExecutor` (`--isolation thread`) runs the app in this process, in a thread: no
isolation, but a debugger and print statements work as usual; a cancelled task's thread
runs on to its end (a thread cannot be stopped), only its result is dropped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stamen.client import ClientApp
from stamen.client.runtime import run_task
from stamen.client.task import AppResult, AppTask
from stamen.common.errors import WorkerDiedError
from stamen.workers import TransferCounts, WorkerPool

__all__ = ["ThreadExecutor", "WorkerProcessExecutor"]


class ThreadExecutor:
    """Runs the app in a thread of this process (for debugging; no isolation)."""

    def __init__(self, app: ClientApp) -> None:
        self._app = app

    async def execute(self, task: AppTask) -> AppResult:
        return await asyncio.to_thread(run_task, self._app, task)

    async def aclose(self) -> None:
        """Nothing to release: the app lives in this process."""


class WorkerProcessExecutor:
    """A warm worker process that imports the app once and serves one task at a time."""

    def __init__(self, app_ref: str, directory: Path, *, start_timeout: float = 300.0) -> None:
        self.app_ref = app_ref
        self._start_timeout = start_timeout
        self._pool = WorkerPool(
            app_ref,
            directory,
            num_workers=1,
            num_cpus=None,  # the machine's default threading, not one CPU's share
            start_method="spawn",  # never fork a process that runs an event loop
        )

    @property
    def segment_prefix(self) -> str:
        """The names of the worker's shared-memory segments start with this."""
        return self._pool.segment_prefix

    @property
    def transfers(self) -> TransferCounts:
        """How objects have crossed to the worker and back so far."""
        return self._pool.transfers

    async def start(self) -> None:
        """Start the worker and wait until it has imported the app.

        Raises AppLoadError when the app does not import, WorkerDiedError when the import
        takes longer than `start_timeout`; `aclose()` the executor either way.
        """
        self._pool.start()
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._pool.started()
        except TimeoutError:
            raise WorkerDiedError(
                f"it did not import {self.app_ref!r} within {self._start_timeout:g}s"
            ) from None

    async def execute(self, task: AppTask) -> AppResult:
        return await self._pool.execute(task)

    async def aclose(self) -> None:
        """Stop the worker (a busy one at once, an idle one within a few seconds) and
        unlink its shared-memory segments."""
        await self._pool.aclose()
