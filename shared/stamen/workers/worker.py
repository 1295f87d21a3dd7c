"""A pool's worker process: import the ClientApp once, then run tasks for the pool.

The worker says `Loaded()` or `LoadFailed(reason)` once, then answers each `Job` with
`Done` (or `Failed` when the task could not run at all; what user code raises is an error
reply inside `Done`), one at a time, until its pipe closes. Large objects arrive as
shared-memory segments that the worker maps once and reads in place; large reply objects
leave through the worker's reply arena, named `<segment prefix>r<pid>-<n>` so that the
pool can find what a dead worker left. Ctrl-C in a terminal reaches the whole process
group, and a service manager may send SIGTERM to every process of the service: the worker
ignores both, the pool decides when its workers stop (and kills a busy one). SIGUSR1
interrupts the task in hand (`TaskCancelled` is raised in it): the pool sends it when
nobody waits for the task any more, and kills a worker that does not yield in time.

What the app imported lives as long as the worker, so it is frozen out of the garbage
collector: collections would walk torch's objects again and again (and copy their pages
in a forked worker), and so would the interpreter's teardown in a spawned worker (most
of a second; forked workers leave by `os._exit`, as multiprocessing has them do).
Before that, a spawned worker imports what the app's libraries would import lazily at its
first task (`warm`: torch's optimizer imports `torch._dynamo`, about a second of CPU), so
that a warm worker (a SuperNode's, started before any run) pays it at start, not in round
one; a forked worker has it from its parent already.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

from stamen.client import ClientApp
from stamen.client.runtime import run_task
from stamen.client.task import AppTask
from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.context import Context
from stamen.common.errors import AppLoadError
from stamen.common.loading import load_app
from stamen.common.logging import setup_logging
from stamen.common.records import RecordDict

from .resources import THREAD_VARIABLES, WorkerSpec
from .shm import Attachments, ReplyArena, SharedRef
from .warm import import_lazy_modules

__all__ = [
    "INTERRUPT",
    "Done",
    "Failed",
    "Job",
    "LoadFailed",
    "Loaded",
    "Packed",
    "serve",
]

Packed = dict[str, bytes | SharedRef]
"""Objects as they cross the pipe: small ones inline, large ones by segment."""

INTERRUPT = signal.SIGUSR1
"""The signal that cancels a worker's task in hand."""

_busy = False  # a task is running: INTERRUPT cancels it (between tasks it is ignored)


class TaskCancelled(BaseException):
    """Raised in the running task by INTERRUPT; a BaseException, so that user code's
    `except Exception` does not swallow it."""


def _interrupt(signum: int, frame: object) -> None:
    if _busy:
        raise TaskCancelled


@dataclass(frozen=True, slots=True)
class Loaded:
    pid: int


@dataclass(frozen=True, slots=True)
class LoadFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    envelope: Envelope
    objects: Packed
    context: Context
    release: tuple[str, ...] = ()
    """Segments the pool has unlinked since this worker's last job: unmap them."""


@dataclass(frozen=True, slots=True)
class Done:
    job_id: int
    envelope: Envelope
    objects: Packed
    state: RecordDict


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: int
    reason: str


def serve(
    conn: Connection,
    app_ref: str,
    directory: str | None,
    spec: WorkerSpec,
    segment_prefix: str,
    log_level: int,
    inherited: tuple[int, ...] | None = None,
) -> None:
    """The worker process's main function. `inherited`: the worker was forked from the
    pool's process, and these are the pool's ends of pipes (its own, earlier workers') to
    close; the logging handlers it inherited are the pool's too, not to write through."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (and not a handler of the pool's process)
    signal.signal(INTERRUPT, _interrupt)
    if inherited is not None:
        for fd in inherited:
            os.close(fd)
        root = logging.getLogger()
        for handler in root.handlers[:]:
            root.removeHandler(handler)  # not closed: they are the parent's, copied
    setup_logging(log_level, label=f"worker {os.getpid()}")  # the format its parent chose
    _apply(spec)
    try:
        # With a forkserver (or forked from the pool's process) the app module is
        # already imported: this only looks it up.
        app = load_app(app_ref, ClientApp, directory)
    except AppLoadError as exc:
        conn.send(LoadFailed(exc.reason))
        return
    torch = sys.modules.get("torch")
    if torch is not None and spec.threads is not None:
        torch.set_num_threads(spec.threads)  # imported before `_apply` (preload, or forked)
    import_lazy_modules()
    gc.freeze()
    conn.send(Loaded(os.getpid()))
    replies = ReplyArena(f"{segment_prefix}r{os.getpid()}-")
    attachments = Attachments()
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:  # the pool closed the pipe: time to go
                return
            attachments.release(job.release)
            conn.send(_run(app, job, attachments, replies))
    finally:
        attachments.close()
        replies.close()


def _apply(spec: WorkerSpec) -> None:
    """Give this worker its threads and GPUs before the app (and torch) initialize."""
    if spec.threads is not None:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(spec.threads)
    if spec.cuda_visible_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible_devices


def _run(app: ClientApp, job: Job, attachments: Attachments, replies: ReplyArena) -> object:
    global _busy
    try:
        _busy = True
        objects: dict[str, Buffer] = {
            oid: attachments.view(item) if isinstance(item, SharedRef) else item
            for oid, item in job.objects.items()
        }
        result = run_task(app, AppTask(job.envelope, objects, job.context))
        _busy = False
        return Done(job.job_id, result.envelope, replies.pack(result.objects), result.state)
    except TaskCancelled:
        return Failed(job.job_id, "the task was cancelled")
    except Exception as exc:  # run_task answers user errors itself: this is ours or the codec's
        logging.getLogger(__name__).exception("task %d could not run", job.job_id)
        return Failed(job.job_id, f"{type(exc).__name__}: {exc}")
    finally:
        _busy = False
