"""BundleExecutor: how a SuperNode started without an app serves any submitted run.

For a run's first task it asks the SuperLink which app bundle the run has (`Run.bundle`,
its sha256), fetches the bundle through Fleet unless the cache has it, checks it against
that hash, unpacks it into `cache/<hash>/` and starts a warm worker process for it (the
same `WorkerProcessExecutor` as a node with a fixed app). Runs of the same bundle share
its worker; a worker unused for `idle_timeout` seconds is closed. An app whose imports
fail (a dependency missing on this node) gets an error reply that names the module:
nothing is installed at run time. With a TrustPolicy (`--trusted-entities`,
`--allow-bundle`), every bundle is checked against it before it is unpacked, cached or
not; a refused bundle gets an error reply for each of its tasks and runs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from stamen.client.task import AppResult, AppTask, Buffer
from stamen.common.bundle import unpack_bundle
from stamen.common.errors import AppLoadError
from stamen.common.project import read_project
from stamen.common.run import Run
from stamen.common.trust import TrustPolicy, UntrustedBundleError

from .executor import WorkerProcessExecutor

__all__ = ["IDLE_TIMEOUT", "BundleExecutor"]

logger = logging.getLogger(__name__)

IDLE_TIMEOUT = 600.0
"""Seconds a bundle's worker may stay unused before it is closed."""

MAX_RUNS = 256
"""Runs whose bundle is remembered (the oldest is asked for again if it comes back)."""

GetRun = Callable[[int], Awaitable[Run]]
PullObject = Callable[[str], Awaitable[Buffer]]


class BundleExecutor:
    """An `AppExecutor` that runs each task with the ClientApp of its run's bundle."""

    def __init__(
        self, cache: Path, *, idle_timeout: float = IDLE_TIMEOUT, policy: TrustPolicy | None = None
    ) -> None:
        self.cache = cache
        self._policy = policy
        self._refused: dict[str, str] = {}
        """Bundles the policy refused -> why (not fetched again for their next tasks)."""
        self._idle_timeout = idle_timeout
        self._get_run: GetRun | None = None
        self._pull_object: PullObject | None = None
        self._runs: dict[int, Run] = {}
        self._workers: dict[str, WorkerProcessExecutor] = {}
        self._last_used: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: dict[str, int] = {}

    def attach(self, get_run: GetRun, pull_object: PullObject) -> None:
        """How to ask the SuperLink for a run and an object (the agent's calls, which
        retry and use the node's current id)."""
        self._get_run, self._pull_object = get_run, pull_object

    async def execute(self, task: AppTask) -> AppResult:
        bundle, worker = await self._worker_for(task.context.run_id)
        self._busy[bundle] = self._busy.get(bundle, 0) + 1
        try:
            return await worker.execute(task)
        finally:
            self._busy[bundle] -= 1
            self._last_used[bundle] = time.monotonic()

    async def aclose(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            await worker.aclose()

    async def _worker_for(self, run_id: int) -> tuple[str, WorkerProcessExecutor]:
        run = self._runs.get(run_id)
        if run is None:
            assert self._get_run is not None, "attach() the executor to its agent first"
            run = await self._get_run(run_id)
            self._runs[run_id] = run
            if len(self._runs) > MAX_RUNS:
                del self._runs[next(iter(self._runs))]
        if not run.bundle:
            raise AppLoadError(
                run.client_app or "(none)",
                f"run {run_id} has no app bundle and this SuperNode has no app: start it "
                "with one (stamen-supernode client:app) or submit the run with `stamen run`",
            )
        await self._evict_idle(keep=run.bundle)
        async with self._locks.setdefault(run.bundle, asyncio.Lock()):
            worker = self._workers.get(run.bundle)
            if worker is None:
                worker = await self._start(run)
                self._workers[run.bundle] = worker
        self._last_used[run.bundle] = time.monotonic()
        return run.bundle, worker

    async def _start(self, run: Run) -> WorkerProcessExecutor:
        folder = self.cache / run.bundle
        if self._policy is not None or not folder.is_dir():
            folder = await self._fetch(run)
        if self._policy is not None:
            # The run's ClientApp reference comes from the SuperLink: it must be the bundle's.
            named = read_project(folder).components.get("clientapp")
            if named != run.client_app:
                raise UntrustedBundleError(
                    run.bundle, f"names ClientApp {named!r}, not the run's {run.client_app!r}"
                )
        worker = WorkerProcessExecutor(run.client_app, folder)
        try:
            await worker.start()
        except BaseException:
            await worker.aclose()
            raise
        logger.info("run %d: ClientApp %s of bundle %s ready", run.run_id, run.client_app,
                    run.bundle[:12])  # fmt: skip
        return worker

    async def _fetch(self, run: Run) -> Path:
        """The run's bundle, fetched, checked against the policy and unpacked."""
        refused = self._refused.get(run.bundle)
        if refused is not None:
            raise UntrustedBundleError(run.bundle, refused)
        assert self._pull_object is not None
        logger.info("run %d: fetching app bundle %s", run.run_id, run.bundle[:12])
        data = bytes(await self._pull_object(run.bundle))
        if self._policy is not None:
            try:
                publisher = self._policy.check(data, run.bundle)
            except UntrustedBundleError as exc:
                if len(self._refused) >= MAX_RUNS:
                    del self._refused[next(iter(self._refused))]
                self._refused[run.bundle] = exc.reason
                raise
            if publisher is not None:
                logger.info("run %d: bundle %s is signed by trusted publisher %s",
                            run.run_id, run.bundle[:12], publisher)  # fmt: skip
        return unpack_bundle(data, run.bundle, self.cache)

    async def _evict_idle(self, keep: str) -> None:
        now = time.monotonic()
        for bundle, used in list(self._last_used.items()):
            idle = not self._busy.get(bundle) and now - used > self._idle_timeout
            if bundle != keep and idle:
                worker = self._workers.pop(bundle, None)
                del self._last_used[bundle]
                if worker is not None:
                    logger.info("closing the idle worker of bundle %s", bundle[:12])
                    await worker.aclose()
