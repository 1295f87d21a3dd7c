"""The ClientApp worker process: import the app once, then serve tasks over a pipe.

`WorkerProcessExecutor` starts `serve_worker` in a spawned process. The worker says
`Loaded()` or `LoadFailed(reason)` once, then answers each `AppTask` it receives with an
`AppResult`, one at a time, until the pipe closes. The app (and torch with it) is imported
once per worker, not per message. Signals meant for the node (Ctrl-C in a terminal reaches
the whole process group) are ignored here: the node decides when its worker stops.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from stamen.client import ClientApp
from stamen.client.runtime import run_task
from stamen.client.task import AppResult, AppTask, Buffer
from stamen.common.errors import AppLoadError
from stamen.common.loading import load_app
from stamen.common.logging import setup_logging

__all__ = ["LoadFailed", "Loaded", "portable_objects", "serve_worker"]


@dataclass(frozen=True, slots=True)
class Loaded:
    """The worker imported the app and waits for tasks."""

    pid: int


@dataclass(frozen=True, slots=True)
class LoadFailed:
    """The worker could not import the app; it exits after saying why."""

    reason: str


def portable_objects(objects: Mapping[str, Buffer]) -> dict[str, Buffer]:
    """The objects in a form that pickles: memoryviews become bytes (a copy)."""
    return {k: bytes(v) if isinstance(v, memoryview) else v for k, v in objects.items()}


def serve_worker(conn: Connection, app_ref: str, directory: str, log_level: int) -> None:
    """The worker process's main function."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(log_level)
    try:
        app = load_app(app_ref, ClientApp, Path(directory))
    except AppLoadError as exc:
        conn.send(LoadFailed(exc.reason))
        return
    conn.send(Loaded(os.getpid()))
    while True:
        try:
            task: AppTask = conn.recv()
        except EOFError:  # the node closed the pipe: time to go
            return
        result = run_task(app, task)
        conn.send(
            AppResult(
                envelope=result.envelope,
                objects=portable_objects(result.objects),
                state=result.state,
            )
        )
