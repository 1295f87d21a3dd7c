"""The two ways a SuperNode runs its ClientApp: a warm worker process, or a thread.

`WorkerProcessExecutor` (the default, `--isolation process`) keeps one spawned worker
that imported the app once and serves tasks one at a time over a pipe. A worker that dies
(segfault, OOM kill, `sys.exit`, SIGKILL) turns into a `WorkerDiedError` for the task it
was running, and a fresh worker starts importing at once for the next task. The event
loop never blocks on the pipe: a thread does the blocking send and receive.

`ThreadExecutor` (`--isolation thread`) runs the app in this process, in a thread: no
isolation, but a debugger and print statements work as usual.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from stamen.client import ClientApp
from stamen.client.runtime import run_task
from stamen.client.task import AppResult, AppTask
from stamen.common.errors import AppLoadError, WorkerDiedError

from .worker import Loaded, LoadFailed, portable_objects, serve_worker

__all__ = ["ThreadExecutor", "WorkerProcessExecutor"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0
"""Seconds a worker gets to exit after its pipe closes, before it is killed."""


class ThreadExecutor:
    """Runs the app in a thread of this process (for debugging; no isolation)."""

    def __init__(self, app: ClientApp) -> None:
        self._app = app

    async def execute(self, task: AppTask) -> AppResult:
        return await asyncio.to_thread(run_task, self._app, task)

    async def aclose(self) -> None:
        """Nothing to release: the app lives in this process."""


class _Worker:
    """One worker process and the node's end of its pipe."""

    __slots__ = ("conn", "loaded", "process")

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.loaded = False

    def describe_exit(self) -> str:
        """Why the process ended, in words (call once it has ended)."""
        code = self.process.exitcode
        if code is None:
            return "it closed its pipe but is still running"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"pid {self.process.pid} was killed by {name}{hint}"
        return f"pid {self.process.pid} exited with code {code}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


class WorkerProcessExecutor:
    """A warm worker process that imports the app once and serves one task at a time."""

    def __init__(
        self,
        app_ref: str,
        directory: Path,
        *,
        start_timeout: float = 300.0,
        log_level: int = logging.INFO,
    ) -> None:
        self.app_ref = app_ref
        self.directory = directory
        self._start_timeout = start_timeout
        self._log_level = log_level
        self._context = multiprocessing.get_context("spawn")  # never fork an event loop
        self._worker: _Worker | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The current worker's process id (None before the first start)."""
        return None if self._worker is None else self._worker.process.pid

    async def start(self) -> None:
        """Start the worker and wait until it has imported the app.

        Raises the AppLoadError that the worker met when the app does not import.
        """
        async with self._lock:
            await self._loaded_worker()

    async def execute(self, task: AppTask) -> AppResult:
        async with self._lock:
            worker = await self._loaded_worker()
            portable = AppTask(task.envelope, portable_objects(task.objects), task.context)
            try:
                result = await asyncio.to_thread(_round_trip, worker.conn, portable)
            except (EOFError, OSError):
                doing = f"running message {task.envelope.message_id}"
                raise await self._died(worker, doing) from None
            except BaseException:
                # Cancelled (shutdown) or unpicklable: the worker's state is unknown.
                self._discard(worker)
                raise
            if not isinstance(result, AppResult):
                self._discard(worker)
                raise WorkerDiedError(f"it answered with a {type(result).__name__}")
            return result

    async def aclose(self) -> None:
        """Close the pipe so the worker exits; kill it if it has not within a few seconds."""
        async with self._lock:
            worker, self._worker = self._worker, None
            if worker is None:
                return
            worker.conn.close()
            try:
                await asyncio.to_thread(worker.process.join, _STOP_TIMEOUT)
            finally:  # also when cancelled: never leave a worker behind
                if worker.process.is_alive():
                    logger.warning("the ClientApp worker did not exit in time; killing it")
                    worker.kill()
            await asyncio.to_thread(worker.process.join, _STOP_TIMEOUT)

    def _spawn(self) -> _Worker:
        node_end, worker_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=serve_worker,
            args=(worker_end, self.app_ref, str(self.directory), self._log_level),
            name="stamen-clientapp",
        )
        process.start()
        worker_end.close()  # ours closed, the pipe reports EOF once the worker is gone
        logger.debug("started ClientApp worker pid %s for %s", process.pid, self.app_ref)
        return _Worker(process, node_end)

    async def _loaded_worker(self) -> _Worker:
        worker = self._worker
        if worker is None:
            worker = self._worker = self._spawn()
        if worker.loaded:
            return worker
        try:
            async with asyncio.timeout(self._start_timeout):
                hello = await asyncio.to_thread(worker.conn.recv)
        except TimeoutError:
            self._discard(worker)
            raise WorkerDiedError(
                f"it did not import {self.app_ref!r} within {self._start_timeout:g}s"
            ) from None
        except (EOFError, OSError):
            raise await self._died(worker, f"importing {self.app_ref!r}", restart=False) from None
        except BaseException:
            self._discard(worker)
            raise
        if isinstance(hello, LoadFailed):
            self._discard(worker)
            raise AppLoadError(self.app_ref, hello.reason)
        if not isinstance(hello, Loaded):
            self._discard(worker)
            raise WorkerDiedError(f"it sent {type(hello).__name__} instead of a greeting")
        worker.loaded = True
        logger.info("ClientApp %s loaded in worker pid %d", self.app_ref, hello.pid)
        return worker

    async def _died(self, worker: _Worker, doing: str, *, restart: bool = True) -> WorkerDiedError:
        """The error for a worker found dead; a replacement starts importing right away."""
        await asyncio.to_thread(worker.process.join, _STOP_TIMEOUT)
        self._discard(worker)
        error = WorkerDiedError(f"{worker.describe_exit()} while {doing}")
        logger.error("%s", error)
        if restart:
            self._worker = self._spawn()
        return error

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        if self._worker is worker:
            self._worker = None


def _round_trip(conn: Connection, task: AppTask) -> object:
    conn.send(task)
    return conn.recv()
