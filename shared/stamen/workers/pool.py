"""The worker pool that runs ClientApp calls in worker processes.

In a simulation one pool serves every virtual SuperNode: each node's agent gets a cheap
`PoolExecutor` handle (its `AppExecutor`), and tasks from all of them queue here for the
next idle worker. A deployed SuperNode runs its ClientApp in a pool of one worker
(`stamen.supernode.executor`). Workers are processes (forkserver or spawn, see
`launcher`) that import the app once; a pool made before its event loop runs may fork its
first workers from its own process instead (`prefork`), which has imported the app
already. Large array objects cross through shared memory (`shm`): a broadcast model is
copied once into a segment that every task of the round maps, and large replies come back
the same way. Each worker has a thread of its own here that does the blocking pipe I/O,
so the event loop never waits on a pipe. A worker that dies fails only the task it was
running (`WorkerDiedError`), and a replacement starts at once. A task whose caller is
cancelled (its instruction expired, its run stopped) is interrupted in its worker; a
worker that does not yield within `cancel_grace` seconds is killed and replaced.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from stamen.client.task import AppResult, AppTask
from stamen.common.buffers import Buffer, byte_view
from stamen.common.errors import AppLoadError, StamenError
from stamen.common.status import StatusCode

from .launcher import ContextLease, StartMethod, default_start_method, fork_blocker, fork_context
from .resources import plan_workers, usable_cpus, visible_gpus
from .shm import INLINE_LIMIT, CachedSegment, SegmentCache, sweep
from .slot import Outcome, Slot, Started, WorkerSetup, start_worker
from .worker import Job, Packed

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "PoolClosedError",
    "PoolExecutor",
    "TransferCounts",
    "WorkerPool",
]

logger = logging.getLogger(__name__)

_pool_ids = itertools.count(1)


class PoolClosedError(StamenError):
    """A task reached the worker pool after (or while) it closed."""

    status = StatusCode.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("the ClientApp's worker pool is closed")


@dataclass(slots=True)
class TransferCounts:
    """How task and reply objects crossed to and from the workers."""

    segments_created: int = 0
    objects_shared: int = 0
    objects_inline: int = 0
    replies_shared: int = 0
    replies_inline: int = 0


DEFAULT_CANCEL_GRACE = 5.0
"""Seconds a worker has to yield a cancelled task before it is killed."""


@dataclass(eq=False, slots=True)
class _Pending:
    job: Job
    future: asyncio.Future[AppResult]
    queued: bool = True
    slot: Slot | None = None  # the slot running it, once dispatched


class WorkerPool:
    """Worker processes that run `client_app_ref` (`module:attribute`) for many nodes.

    `async with WorkerPool(...) as pool` starts the workers (they begin importing the app
    at once) and closes them on exit; `await pool.started()` waits until all have loaded
    the app and raises `AppLoadError` when it does not load. Workers: `num_workers`
    (default: one per usable CPU), at most as many as fit clients of `num_cpus` CPUs and
    `num_gpus` GPUs each (see `resources.plan_workers`); `num_cpus=None` leaves the
    workers' math libraries their default threads.
    """

    def __init__(
        self,
        client_app_ref: str,
        directory: Path | None = None,
        *,
        num_workers: int | None = None,
        num_cpus: float | None = 1.0,
        num_gpus: float = 0.0,
        start_method: StartMethod | None = None,
        idle_segment_bytes: int = 256 << 20,
        stop_timeout: float = 5.0,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
    ) -> None:
        self._specs = plan_workers(
            num_workers=num_workers,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            cpus=usable_cpus(),
            gpus=visible_gpus() if num_gpus > 0 else [],
        )
        self.app_ref = client_app_ref
        self._directory = None if directory is None else str(directory)
        self.start_method = start_method or default_start_method(num_gpus)
        self.segment_prefix = f"stamen-{os.getpid()}-{next(_pool_ids)}-"
        self._lease = ContextLease(
            self.start_method, client_app_ref, self._directory, self._specs[0].threads
        )
        self._preforked: list[Started] = []
        self._counts = TransferCounts()
        self._stop_timeout = stop_timeout
        self._cancel_grace = cancel_grace
        self._log_level = logging.getLogger().getEffectiveLevel()
        self._job_ids = itertools.count(1)
        self._slots: list[Slot] = []
        # Each loaded slot takes two tasks at a time: while its worker runs one, the next
        # waits in the slot, which sends it as soon as the reply is in, with no trip
        # through the event loop (a busy loop left the workers idle between tasks). A
        # slot's free places: first ones in `_idle`, second ones in `_spare`, so that
        # tasks go to idle workers before any waits behind another.
        self._idle: deque[Slot] = deque()
        self._spare: deque[Slot] = deque()
        self._queue: deque[_Pending] = deque()
        self._running: dict[int, _Pending] = {}
        self._up: set[Slot] = set()  # workers that have loaded the app and live
        self._all_up = asyncio.Event()
        self._ready = False  # all workers had loaded the app once
        self._failure: StamenError | None = None
        self._closing = False
        self._closed = False
        self._began = 0.0
        self._cache = SegmentCache(
            self.segment_prefix,
            idle_bytes=idle_segment_bytes,
            on_unlink=self._segment_unlinked,
        )

    @property
    def num_workers(self) -> int:
        return len(self._specs)

    @property
    def transfers(self) -> TransferCounts:
        """How objects have crossed so far (shared memory or inline)."""
        return replace(self._counts, segments_created=self._cache.segments_created)

    def fork_blocker(self) -> str | None:
        """Why `prefork()` would not fork now (see `launcher.fork_blocker`); None: it would."""
        return fork_blocker(self.start_method, self._specs[0].threads)

    def prefork(self) -> bool:
        """Fork the workers from this process now, if that is safe (`fork_blocker`): they
        start with all it has imported (the ClientApp, torch) instead of importing it
        again, and no forkserver runs unless a worker needs replacing. Call it before an
        event loop runs, then start the pool as usual. False, with nothing started, when
        it may not: `start()` then starts the workers the usual way."""
        if self._slots or self._preforked:
            raise RuntimeError("the worker pool is started already")
        blocker = self.fork_blocker()
        if blocker is not None:
            logger.debug("not forking the workers from this process: %s", blocker)
            return False
        self._began = time.monotonic()
        setup = self._worker_setup()
        context = fork_context()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of any thread (BLAS pools too); fork_blocker has checked
                # that no Python thread runs, and those pools reset themselves in the child.
                warnings.filterwarnings("ignore", ".*fork", DeprecationWarning)
                for spec in self._specs:
                    started = start_worker(setup, context, spec, self._preforked)
                    self._preforked.append(started)
        except OSError as exc:
            logger.warning("could not fork the workers (%s): starting them the usual way", exc)
            self._discard_preforked()
            return False
        atexit.register(self._abandon)
        logger.info(
            "forked %d workers from this process for ClientApp %s",
            len(self._preforked),
            self.app_ref,
        )
        return True

    def start(self) -> None:
        """Start the workers (or take over the preforked ones); they import the app while
        the caller goes on."""
        if self._slots:
            raise RuntimeError("the worker pool is started already")
        self._loop = asyncio.get_running_loop()
        self._setup = self._worker_setup()
        events = _Events(self)
        preforked, self._preforked = self._preforked, []
        if preforked:
            firsts: list[Started | None] = list(preforked)
        else:
            self._began = time.monotonic()
            self._lease.get()  # launches the forkserver (with the app) now
            firsts = [None] * len(self._specs)
            logger.info(
                "starting %s (%s) for ClientApp %s",
                _workers(len(self._specs)),
                self.start_method,
                self.app_ref,
            )
        self._slots = [
            Slot(self._setup, spec, events, first)
            for spec, first in zip(self._specs, firsts, strict=True)
        ]
        atexit.register(self._abandon)
        for slot in self._slots:
            slot.thread.start()

    async def started(self) -> None:
        """Wait until every worker has loaded the app (after a worker died: until its
        replacement has); AppLoadError when the app does not load."""
        if not self._slots:
            raise RuntimeError("start the worker pool first")
        await self._all_up.wait()
        if self._failure is not None:
            raise self._failure

    def executor(self) -> PoolExecutor:
        """A handle for one virtual node; all handles share this pool."""
        return PoolExecutor(self)

    async def execute(self, task: AppTask) -> AppResult:
        """Run the ClientApp on `task` in the next idle worker.

        Raises WorkerDiedError when the worker died running it, AppLoadError when the app
        does not load, PoolClosedError when the pool closes first.
        """
        if not self._slots:
            raise RuntimeError("start the worker pool first")
        self._check_open()
        entries: list[CachedSegment] = []
        pending: _Pending | None = None
        try:
            objects = await self._pack(task.objects, entries)
            self._check_open()
            job = Job(next(self._job_ids), task.envelope, objects, task.context)
            pending = _Pending(job, self._loop.create_future())
            self._queue.append(pending)
            self._dispatch()
            return await pending.future
        except asyncio.CancelledError:
            if pending is not None and pending.slot is not None:
                self._cancel(pending)
            raise
        finally:
            if pending is not None and pending.queued:
                self._queue.remove(pending)
            for entry in entries:
                self._cache.release(entry)

    def _cancel(self, pending: _Pending) -> None:
        """Interrupt a running task nobody waits for; kill its worker if it does not yield."""
        slot, job_id = pending.slot, pending.job.job_id
        if slot is None or job_id not in self._running:
            return
        logger.info("cancelling task %d in its worker", job_id)
        slot.cancel(job_id, kill=False)

        def kill_if_running() -> None:
            if job_id in self._running and not self._closing:
                slot.cancel(job_id, kill=True)

        self._loop.call_later(self._cancel_grace, kill_if_running)

    async def aclose(self) -> None:
        """Fail queued and running tasks with PoolClosedError, stop the workers (killing
        those that do not exit within `stop_timeout`) and unlink every segment."""
        if self._closing:
            return
        self._closing = True
        self._fail_all(PoolClosedError())
        try:
            if self._preforked:
                await asyncio.to_thread(self._discard_preforked)
            if self._slots:
                for slot in self._slots:
                    slot.stop(kill=self._places(slot) < 2)
                self._idle.clear()
                self._spare.clear()
                threads = [slot.thread for slot in self._slots]
                await asyncio.to_thread(_join, threads, self._stop_timeout + 2.0)
                await self._cache.aclose()
                await asyncio.to_thread(_close_context, self._lease, self._stop_timeout)
        finally:
            self._release_segments()
            atexit.unregister(self._abandon)
            self._closed = True
            logger.info("worker pool for %s closed", self.app_ref)

    async def __aenter__(self) -> WorkerPool:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _worker_setup(self) -> WorkerSetup:
        return WorkerSetup(
            context=self._lease.get,
            app_ref=self.app_ref,
            directory=self._directory,
            segment_prefix=self.segment_prefix,
            log_level=self._log_level,
            stop_timeout=self._stop_timeout,
        )

    def _discard_preforked(self) -> None:
        preforked, self._preforked = self._preforked, []
        for started in preforked:
            started.discard(self._stop_timeout)

    # -- the event loop's side --------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise PoolClosedError()

    async def _pack(self, objects: Mapping[str, Buffer], entries: list[CachedSegment]) -> Packed:
        """The objects as they cross the pipe; the segments they use go to `entries`."""
        packed: Packed = {}
        for oid, data in objects.items():
            if byte_view(data).nbytes >= INLINE_LIMIT:
                try:
                    entry, ref = await self._cache.acquire(oid, data)
                except OSError as exc:
                    logger.warning("no shared memory (%s): object %s goes inline", exc, oid)
                else:
                    entries.append(entry)
                    packed[oid] = ref
                    self._counts.objects_shared += 1
                    continue
            packed[oid] = bytes(data)
            self._counts.objects_inline += 1
        return packed

    def _places(self, slot: Slot) -> int:
        """How many more tasks `slot` takes now (0 to 2)."""
        return (slot in self._idle) + (slot in self._spare)

    def _free_place(self, slot: Slot) -> None:
        """`slot` takes one more task: a place behind a running task goes to `_spare`;
        once the worker runs nothing, its first place goes to `_idle`."""
        (self._idle if slot in self._spare else self._spare).append(slot)

    def _dispatch(self) -> None:
        while self._queue and (self._idle or self._spare):
            pending = self._queue.popleft()
            pending.queued = False
            slot = (self._idle or self._spare).popleft()
            pending.slot = slot
            self._running[pending.job.job_id] = pending
            slot.assign(pending.job)

    def _notify(self, callback: Callable[..., None], *args: Any) -> None:
        """From a slot's thread: run `callback(*args)` on the event loop."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for news
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_loaded(self, slot: Slot, pid: int) -> None:
        if self._closing:
            return
        self._up.add(slot)
        if self._ready:
            logger.info("ClientApp %s loaded in worker pid %d, a replacement", self.app_ref, pid)
        elif len(self._up) == len(self._slots):
            self._ready = True
            logger.info(
                "ClientApp %s loaded in %s (%.2fs since the pool started)",
                self.app_ref,
                f"worker pid {pid}" if len(self._slots) == 1 else f"all {len(self._slots)} workers",
                time.monotonic() - self._began,
            )
        if len(self._up) == len(self._slots):
            self._all_up.set()
        waiting = sum(pending.slot is slot for pending in self._running.values())
        for _ in range(2 - waiting):
            self._free_place(slot)
        self._dispatch()

    def _on_load_failed(self, slot: Slot, reason: str) -> None:
        if self._closing or self._failure is not None:
            return
        self._failure = AppLoadError(self.app_ref, reason)
        logger.error("%s", self._failure)
        self._fail_queued(self._failure)
        self._all_up.set()

    def _on_broken(self, failure: StamenError) -> None:
        if self._closing:
            return
        self._failure = failure
        self._fail_all(failure)
        self._all_up.set()

    def _on_finished(self, slot: Slot, job_id: int, outcome: Outcome) -> None:
        pending = self._running.pop(job_id, None)
        if outcome.result is not None:
            self._counts.replies_shared += outcome.replies_shared
            self._counts.replies_inline += len(outcome.result.objects) - outcome.replies_shared
        if pending is not None and not pending.future.done():
            if outcome.result is not None:
                pending.future.set_result(outcome.result)
            else:
                assert outcome.error is not None
                pending.future.set_exception(outcome.error)
        if outcome.died:
            self._up.discard(slot)
            for places in (self._idle, self._spare):  # a task waiting in the slot runs
                if slot in places:  # on its replacement
                    places.remove(slot)
            if not self._closing:  # else the pool killed it (its task has failed already)
                logger.error("%s; starting a replacement", outcome.error)
                if self._failure is None:
                    self._all_up.clear()
        elif not self._closing:
            self._free_place(slot)
            self._dispatch()

    def _segment_unlinked(self, name: str) -> None:
        for slot in self._slots:
            slot.unlinked.append(name)

    def _fail_queued(self, error: StamenError) -> None:
        while self._queue:
            pending = self._queue.popleft()
            pending.queued = False
            if not pending.future.done():
                pending.future.set_exception(error)

    def _fail_all(self, error: StamenError) -> None:
        self._fail_queued(error)
        for pending in self._running.values():
            if not pending.future.done():
                pending.future.set_exception(error)
        self._running.clear()

    def _release_segments(self) -> None:
        self._cache.unlink_all()
        leftovers = sweep(self.segment_prefix)
        if leftovers:
            logger.debug("unlinked %d segments that workers left behind", len(leftovers))

    def _abandon(self) -> None:
        """At interpreter exit, for a pool nobody closed: stop its processes and unlink
        its segments (multiprocessing would otherwise wait forever for the workers)."""
        if self._closed:
            return
        self._closing = True
        self._discard_preforked()
        for slot in self._slots:
            slot.stop(kill=True)
        _join([slot.thread for slot in self._slots], self._stop_timeout + 2.0)
        self._release_segments()
        _close_context(self._lease, self._stop_timeout)


class _Events:
    """The pool's `SlotEvents`: hands what the slots' threads say over to the event loop."""

    __slots__ = ("_pool",)

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def loaded(self, slot: Slot, pid: int) -> None:
        self._pool._notify(self._pool._on_loaded, slot, pid)

    def load_failed(self, slot: Slot, reason: str) -> None:
        self._pool._notify(self._pool._on_load_failed, slot, reason)

    def finished(self, slot: Slot, job_id: int, outcome: Outcome) -> None:
        self._pool._notify(self._pool._on_finished, slot, job_id, outcome)

    def broken(self, failure: StamenError) -> None:
        self._pool._notify(self._pool._on_broken, failure)


class PoolExecutor:
    """One virtual node's `AppExecutor`: a handle on the shared pool."""

    __slots__ = ("_closed", "_pool")

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool
        self._closed = False

    async def execute(self, task: AppTask) -> AppResult:
        if self._closed:
            raise PoolClosedError()
        return await self._pool.execute(task)

    async def aclose(self) -> None:
        """Stop using the pool (which lives on for the other nodes)."""
        self._closed = True


def _workers(count: int) -> str:
    return "1 worker" if count == 1 else f"{count} workers"


def _join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _close_context(lease: ContextLease, timeout: float) -> None:
    """`lease.close()` in a thread of its own, waited for at most `timeout` seconds."""
    thread = threading.Thread(target=lease.close, name="stamen-forkserver-stop", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        logger.warning("the forkserver did not stop within %gs; leaving it", timeout)
