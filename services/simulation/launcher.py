"""Starting worker processes: the multiprocessing context, and a forkserver with the app.

Never fork: the pool's process runs an event loop and threads. `spawn` starts each worker
from scratch, and each imports the app. `forkserver` starts one server process that
imports the app once (`stamen.simulation.preload`) and forks every worker from it, so the
import (torch: seconds) is paid once and its memory is shared. multiprocessing keeps one
forkserver per process: the first pool that needs it launches it with its app, and the
last pool to close stops it, so that a later pool (say, an edited app in a notebook) does
not fork modules imported before the edit. A forkserver that someone else launched is
used as it is: the workers then import the app themselves.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Literal

from .resources import THREAD_VARIABLES

__all__ = [
    "APP_VARIABLE",
    "Context",
    "StartMethod",
    "close_context",
    "default_start_method",
    "open_context",
]

StartMethod = Literal["forkserver", "spawn"]
Context = ForkServerContext | SpawnContext

APP_VARIABLE = "STAMEN_SIMULATION_PRELOAD"
"""JSON `[app_ref, directory or null]`: the app the forkserver imports at launch."""

_PRELOAD = ["__main__", "stamen.simulation.preload"]

_lock = threading.Lock()
_users = 0
_launched = False  # the running forkserver is one that a pool launched


def default_start_method(num_gpus: float) -> StartMethod:
    """forkserver where the platform has it; spawn for GPU clients, because an app that
    touches CUDA at import would leave forked workers unable to use it."""
    if num_gpus == 0 and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def open_context(
    start_method: StartMethod, app_ref: str, directory: str | None, threads: int
) -> Context:
    """The context a pool starts its workers with; pair it with `close_context`."""
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
        variables = {name: str(threads) for name in THREAD_VARIABLES}
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
