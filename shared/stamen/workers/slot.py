"""One worker process at a time, and the thread that talks to it.

The pool keeps a `Slot` per worker. Its thread starts the worker (or takes over one the
pool forked before its event loop ran), waits for it to load the app, then sends it the
jobs the pool assigns, one at a time, doing the blocking pipe I/O so that the event loop
never waits on a pipe. It copies large reply objects out of the worker's reply arena.
When the worker dies it reports the job as failed and starts another. The thread tells
the pool everything through `SlotEvents`, whose methods it calls from its own thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Protocol

from stamen.client.task import AppResult
from stamen.common.buffers import Buffer
from stamen.common.errors import ClientAppError, StamenError, WorkerDiedError

from .launcher import Context
from .resources import WorkerSpec
from .shm import ReplyReader, SharedRef, sweep
from .worker import INTERRUPT, Done, Failed, Job, Loaded, LoadFailed, serve

__all__ = ["Outcome", "Slot", "SlotEvents", "Started", "WorkerSetup", "start_worker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a job: its result, or the error to raise for it."""

    result: AppResult | None = None
    error: StamenError | None = None
    replies_shared: int = 0
    died: bool = False
    """The worker died running it (a replacement is starting)."""


class SlotEvents(Protocol):
    """What a slot's thread tells the pool, calling from that thread."""

    def loaded(self, slot: Slot, pid: int) -> None: ...
    def load_failed(self, slot: Slot, reason: str) -> None: ...
    def finished(self, slot: Slot, job_id: int, outcome: Outcome) -> None: ...
    def broken(self, failure: StamenError) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """How every worker of a pool starts."""

    context: Callable[[], Context]
    """The context new workers start from (called from the slots' threads)."""
    app_ref: str
    directory: str | None
    segment_prefix: str
    log_level: int
    stop_timeout: float


@dataclass(frozen=True, slots=True)
class Started:
    """A worker process just started, and the pool's end of its pipe."""

    process: BaseProcess
    conn: Connection

    def discard(self, timeout: float) -> None:
        """End a worker that no slot took over: its pipe closes, so it exits."""
        self.conn.close()
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(timeout)


def start_worker(
    setup: WorkerSetup, context: Context, spec: WorkerSpec, siblings: Sequence[Started] = ()
) -> Started:
    """Start a worker process from `context` (it loads the app, then says `Loaded`).

    A worker forked from the pool's process inherits the pool's end of its own pipe and
    of the `siblings`' (the workers forked before it), and closes them: else a worker
    would not see its pipe close when the pool closes it.
    """
    conn, child_end = context.Pipe(duplex=True)
    inherited = None
    if context.get_start_method() == "fork":
        inherited = tuple(end.fileno() for end in [conn, *(s.conn for s in siblings)])
    process = context.Process(
        target=serve,
        args=(
            child_end,
            setup.app_ref,
            setup.directory,
            spec,
            setup.segment_prefix,
            setup.log_level,
            inherited,
        ),
        name=f"stamen-worker-{spec.index}",
    )
    try:
        process.start()
    except BaseException:
        conn.close()
        raise
    finally:
        child_end.close()  # so that the pipe reports EOF once the worker is gone
    return Started(process, conn)


class Slot:
    """One worker process at a time, and the thread that talks to it; `first` is a worker
    started already (forked by the pool) that the slot's thread takes over."""

    def __init__(
        self,
        setup: WorkerSetup,
        spec: WorkerSpec,
        events: SlotEvents,
        first: Started | None = None,
    ) -> None:
        self.spec = spec
        self.unlinked: list[str] = []  # event loop side: segments the worker may unmap
        self.thread = threading.Thread(
            target=self._run, name=f"stamen-worker-{spec.index}", daemon=True
        )
        self._setup = setup
        self._events = events
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._job: int | None = None  # the job the worker runs now
        self._dropped: set[int] = set()  # jobs cancelled while they waited in the inbox
        self._stopping = False
        self._first = first

    def assign(self, job: Job) -> None:
        """Event loop side: hand the idle worker a job (with the segments it may unmap)."""
        release, self.unlinked = tuple(self.unlinked), []
        self._inbox.put(Job(job.job_id, job.envelope, job.objects, job.context, release))

    def stop(self, *, kill: bool) -> None:
        """Any thread: stop after the current job; `kill` ends that job now (SIGKILL: the
        worker ignores SIGTERM)."""
        with self._lock:
            self._stopping = True
            if kill and self._process is not None:
                self._process.kill()
        self._inbox.put(None)

    def cancel(self, job_id: int, *, kill: bool) -> None:
        """Any thread: interrupt job `job_id` if the worker still runs it (INTERRUPT), or
        with `kill`, kill the worker (a replacement starts); a job still waiting in the
        inbox is dropped unrun."""
        with self._lock:
            if self._job != job_id:
                self._dropped.add(job_id)
                return
            if self._process is None or self._process.pid is None:
                return
            if kill:
                logger.warning(
                    "worker pid %s did not yield its task: killing it", self._process.pid
                )
                self._process.kill()
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._process.pid, INTERRUPT)

    def _run(self) -> None:
        try:
            while self._cycle():
                pass
        except Exception as exc:  # a bug here must fail the pool's tasks, not hang them
            logger.exception("worker slot %d failed", self.spec.index)
            failure = StamenError(f"the worker pool failed: {exc!r}")
            self._events.broken(failure)

    def _cycle(self) -> bool:
        """Start one worker and serve jobs until it dies (True: start another) or the pool
        stops (False)."""
        started, self._first = self._first, None
        if started is None:
            try:
                started = start_worker(self._setup, self._setup.context(), self.spec)
            except Exception as exc:
                self._events.load_failed(self, f"no worker process started: {exc}")
                return False
        process = started.process
        worker = _Worker(process, started.conn, process.pid or 0, ReplyReader())
        with self._lock:
            self._process = process
            if self._stopping:
                process.kill()
        try:
            hello = _receive(worker)
            if isinstance(hello, Loaded):
                self._events.loaded(self, worker.pid)
                return self._serve(worker)
            if not self._stopping:
                if isinstance(hello, LoadFailed):
                    reason = hello.reason
                else:
                    reason = f"{self._end(worker)} while importing the app"
                self._events.load_failed(self, reason)
            return False
        finally:
            self._end(worker)

    def _serve(self, worker: _Worker) -> bool:
        while True:
            job = self._inbox.get()
            if job is None:
                return False
            with self._lock:
                dropped = job.job_id in self._dropped
                self._dropped.discard(job.job_id)
                self._job = None if dropped else job.job_id
            if dropped:
                self._events.finished(self, job.job_id, _failed("it was cancelled first"))
                continue
            try:
                outcome = self._round_trip(worker, job)
            finally:
                with self._lock:
                    self._job = None
            if outcome is None:
                how = self._end(worker)
                sweep(f"{self._setup.segment_prefix}r{worker.pid}-")
                error = WorkerDiedError(f"{how} while running message {job.envelope.message_id}")
                outcome = Outcome(error=error, died=True)
            self._events.finished(self, job.job_id, outcome)
            if outcome.died:
                return not self._stopping

    def _round_trip(self, worker: _Worker, job: Job) -> Outcome | None:
        """The job's outcome; None when the worker died."""
        try:
            worker.conn.send(job)
        except OSError:
            return None
        except Exception as exc:  # pickling: nothing was sent
            return _failed(f"the task cannot be sent to a worker: {exc}")
        try:
            reply = _receive(worker)
        except Exception as exc:  # unpickling: the reply was read, the worker lives on
            return _failed(f"the worker's reply cannot be read: {exc}")
        if reply is None:
            return None
        if isinstance(reply, Failed):
            return _failed(reply.reason)
        if not isinstance(reply, Done):
            return _failed(f"the worker answered with a {type(reply).__name__}")
        return _unpack(reply, worker.replies)

    def _end(self, worker: _Worker) -> str:
        """Make sure the worker has ended (closing its pipe, then killing it) and say how
        it ended; calling it again only repeats the answer."""
        if worker.ended is None:
            with self._lock:
                if self._process is worker.process:
                    self._process = None
            worker.conn.close()
            worker.replies.close()
            process = worker.process
            process.join(self._setup.stop_timeout)
            if process.exitcode is None:
                logger.warning("worker pid %s did not exit in time: killing it", process.pid)
                process.kill()
                process.join(self._setup.stop_timeout)
            worker.ended = _describe_exit(process)
            if process.exitcode is not None:
                process.close()
        return worker.ended


@dataclass(eq=False, slots=True)
class _Worker:
    process: BaseProcess
    conn: Connection
    pid: int
    replies: ReplyReader
    ended: str | None = None
    """How the process ended, once it has."""


def _receive(worker: _Worker) -> object | None:
    """The worker's next message; None when it died (or closed its pipe) first."""
    ready = wait([worker.conn, worker.process.sentinel])
    if worker.conn not in ready:
        return None
    try:
        message: object = worker.conn.recv()
        return message
    except (EOFError, OSError):
        return None


def _unpack(done: Done, replies: ReplyReader) -> Outcome:
    """The reply, its large objects copied out of the worker's reply arena."""
    try:
        objects: dict[str, Buffer] = {
            oid: replies.take(item) if isinstance(item, SharedRef) else item
            for oid, item in done.objects.items()
        }
    except OSError as exc:
        return _failed(f"the reply's objects are not in shared memory: {exc}")
    shared = sum(isinstance(item, SharedRef) for item in done.objects.values())
    return Outcome(AppResult(done.envelope, objects, done.state), replies_shared=shared)


def _failed(reason: str) -> Outcome:
    return Outcome(error=ClientAppError(f"the task could not run in a worker: {reason}"))


def _describe_exit(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return f"worker pid {process.pid} closed its pipe but is still running"
    if code < 0:
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker pid {process.pid} was killed by {signal.Signals(-code).name}{hint}"
    return f"worker pid {process.pid} exited with code {code}"
