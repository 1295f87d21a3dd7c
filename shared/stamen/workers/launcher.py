"""Starting worker processes: the multiprocessing context, and a forkserver with the app.

Never fork an event loop: once the pool runs, its process has a loop and threads. `spawn`
starts each worker from scratch, and each imports the app. `forkserver` starts one server
process that imports the app once (`stamen.workers.preload`) and forks every worker
from it, so the import (torch: seconds) is paid once and its memory is shared.
multiprocessing keeps one forkserver per process: the first pool that needs it launches
it with its app, and the last pool to close stops it, so that a later pool (say, an
edited app in a notebook) does not fork modules imported before the edit. A forkserver
that someone else launched is used as it is: the workers then import the app themselves.

Before its event loop starts, though, a process that has imported the app already (a
script that passes app objects) may fork the first workers itself (`fork_blocker` says
when that is safe): the import is not paid a second time, and no forkserver runs unless a
worker dies and needs replacing (`ContextLease`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext
from typing import Literal

from .resources import THREAD_VARIABLES

__all__ = [
    "APP_VARIABLE",
    "Context",
    "ContextLease",
    "StartMethod",
    "close_context",
    "default_start_method",
    "fork_blocker",
    "fork_context",
    "open_context",
]

StartMethod = Literal["forkserver", "spawn"]
Context = ForkContext | ForkServerContext | SpawnContext

APP_VARIABLE = "STAMEN_WORKER_PRELOAD"
"""JSON `[app_ref, directory or null]`: the app the forkserver imports at launch."""

_PRELOAD = ["__main__", "stamen.workers.preload"]

_lock = threading.Lock()
_users = 0
_launched = False  # the running forkserver is one that a pool launched


def default_start_method(num_gpus: float) -> StartMethod:
    """forkserver where the platform has it; spawn for GPU clients, because an app that
    touches CUDA at import would leave forked workers unable to use it."""
    if num_gpus == 0 and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def fork_blocker(start_method: StartMethod, threads: int | None) -> str | None:
    """Why this process may not fork workers from itself now; None when it may.

    A fork copies only the calling thread, so no other Python thread may hold a lock the
    child needs, and no event loop may run (the child would share its file descriptors
    and signal wake-up). GNU OpenMP hangs in a child that uses several threads after the
    parent used its pool, so only single-threaded workers qualify; CUDA cannot be used in
    a forked child once the parent initialized it; GPU clients are spawned anyway.
    `threads`: each worker's (None: the libraries' default, one per CPU).
    """
    if start_method != "forkserver":
        return "the workers are spawned"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "this platform cannot fork"
    if threads != 1:
        return "the workers may run several threads each (OpenMP does not survive a fork)"
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return "an event loop runs in this thread"
    if threading.active_count() > 1:
        return "other threads run in this process"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        return "CUDA is initialized in this process"
    return None


def fork_context() -> ForkContext:
    """The context to fork workers from this process with (see `fork_blocker`).

    It starts the resource tracker first, as spawn and forkserver do, so that the forked
    workers share it instead of each starting one (see `shm` for why that matters).
    """
    resource_tracker.ensure_running()
    return multiprocessing.get_context("fork")


class ContextLease:
    """A pool's hold on its context: opened at once (`get()` when the pool starts) or on
    first use (a replacement for a worker that the pool forked itself), closed once."""

    def __init__(
        self, start_method: StartMethod, app_ref: str, directory: str | None, threads: int | None
    ) -> None:
        self.start_method = start_method
        self._args = (app_ref, directory, threads)
        self._lock = threading.Lock()
        self._context: Context | None = None
        self._closed = False

    def get(self) -> Context:
        """The context (launching the forkserver, with the app, on first use); any thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool's context is closed")
            if self._context is None:
                self._context = open_context(self.start_method, *self._args)
            return self._context

    def close(self) -> None:
        """Release the context if it was opened (see `close_context`: this blocks)."""
        with self._lock:
            opened, self._closed = self._context is not None, True
        if opened:
            close_context(self.start_method)


def open_context(
    start_method: StartMethod, app_ref: str, directory: str | None, threads: int | None
) -> Context:
    """The context a pool starts its workers with; pair it with `close_context`.

    A forkserver it launches imports the app with the workers' `threads` (None: leaves
    the thread variables as they are)."""
    global _users, _launched
    if start_method == "spawn":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    server = getattr(forkserver, "_forkserver", None)
    if server is None:
        return context
    with _lock:
        _users += 1
        if getattr(server, "_forkserver_pid", 0) is not None:
            return context  # running already
        previous = list(getattr(server, "_preload_modules", ["__main__"]))
        variables = {} if threads is None else {name: str(threads) for name in THREAD_VARIABLES}
        variables[APP_VARIABLE] = json.dumps([app_ref, directory])
        forkserver.set_forkserver_preload(_PRELOAD)
        try:
            with _environment(variables):
                forkserver.ensure_running()
        finally:
            forkserver.set_forkserver_preload(previous)
        _launched = True
    return context


def close_context(start_method: StartMethod) -> None:
    """A pool is done with its context: the last one stops the forkserver a pool launched.

    Blocks until the forkserver has exited and is reaped: call it from a thread, with a
    bounded wait, once the pool's workers are gone.
    """
    global _users, _launched
    server = getattr(forkserver, "_forkserver", None)
    if start_method != "forkserver" or server is None:
        return
    with _lock:
        _users -= 1
        if _users or not _launched:
            return
        _launched = False
    stop = getattr(server, "_stop", None)
    pid = getattr(server, "_forkserver_pid", None)
    if stop is None or pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        # It has nothing left to fork: spare it an interpreter teardown (torch: ~1 s).
        os.kill(pid, signal.SIGTERM)
    stop()


@contextlib.contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the processes started inside the block."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
