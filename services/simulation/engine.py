"""run_simulation: a whole federation in one process, wired from the deployment's parts.

The SuperLink core with in-memory state, N virtual SuperNodes, each the deployment's
`SuperNodeAgent` over the memory transport with a handle on the shared `WorkerPool` as
its executor (started when its node is first sent an instruction: `nodes.py`), and the
ServerApp runner. Nothing here routes messages or runs apps: it only connects those
parts, so a simulation behaves as a deployment does.

Start-up order hides the app's import time: the pool starts first, so the workers
import the ClientApp (torch: seconds) while this process imports the ServerApp,
opens the SuperLink and registers the nodes. The first instructions wait in the pool's
queue until a worker is ready. When `run_simulation` is called with no event loop running
and this process has imported the ClientApp's module already (it was given the app
object, say), it forks the workers from itself before its loop starts
(`WorkerPool.prefork`), so that nothing is imported twice.

Everything that exists when a simulation starts (torch's objects among it) is frozen out
of the garbage collector until it ends: each full collection would walk all of it again
(a quarter of a second with torch), and 10,000 virtual nodes trigger many.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stamen.client import ClientApp
from stamen.codec.envelope import Envelope
from stamen.common.cli import run
from stamen.common.errors import ConfigError
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.runner import run_serverapp
from stamen.server import ServerApp
from stamen.server.history import History
from stamen.superlink import MemoryLinkState, MemoryObjectStore, SuperLink, observed_link
from stamen.transport.api import ServerAppIoApi
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo
from stamen.workers import WorkerPool

from .apps import AppRef, client_app_ref, server_app_of
from .backend import prefork_warm, worker_pool
from .config import BackendConfig, parse_backend_config
from .nodes import VirtualNodes
from .progress import ObservedServerAppIo, RunObserver
from .references import check_reference

__all__ = ["Simulation", "open_simulation", "run_simulation", "run_simulation_async"]

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 3600.0
"""Virtual nodes live in this process and cannot vanish: heartbeats would only burn CPU
(10,000 agents at the deployment's 5 s are 2,000 calls a second)."""

CHATTY_LOGGERS = ("stamen.supernode", "stamen.superlink")
"""Per-node records (registered, received, replied): one line each for thousands of
virtual nodes. Quieted to WARNING during a simulation unless DEBUG is on for them."""

NODE_START_TIMEOUT = 120.0
"""Seconds the virtual nodes may take to register (100,000 take a few)."""


def run_simulation(
    server_app: ServerApp | str,
    client_app: ClientApp | str,
    num_supernodes: int,
    backend_name: str = "ray",
    backend_config: BackendConfig | Mapping[str, Any] | str | None = None,
    enable_tf_gpu_growth: bool = False,
    verbose_logging: bool = False,
    *,
    run_config: UserConfig | None = None,
    seed: int | None = None,
    directory: str | Path | None = None,
) -> History:
    """Simulate `num_supernodes` nodes running `client_app` under `server_app`; return
    the History. Apps are objects defined at module level, or 'module:attribute' strings
    imported from `directory` (default: sys.path).

    `backend_config`: {"num_workers": ..., "client_resources": {"num_cpus": ...,
    "num_gpus": ...}} (a dict, JSON text or a JSON file's path). `seed` goes to the run
    config as "seed" (what the default ServerApp samples with). Blocks until the run
    ends; from inside a running event loop (a notebook) it runs in a thread of its own.
    Worker processes import the main module, so a script calls this under
    `if __name__ == "__main__":`.

    Flower's arguments: `backend_name` "ray" names the one backend (our worker pool,
    which takes Ray's place), `enable_tf_gpu_growth` sets TF_FORCE_GPU_ALLOW_GROWTH for
    the workers, `verbose_logging` logs at DEBUG.
    """
    _flower_options(backend_name, enable_tf_gpu_growth, verbose_logging)
    plan = _plan(
        server_app, client_app, num_supernodes, backend_config, run_config, seed, directory
    )
    client = plan.client
    pool = worker_pool(client.reference, client.directory, plan.backend)

    def simulate() -> Coroutine[Any, Any, History]:
        return _simulate(plan, server_app, num_supernodes, pool, None)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if client.reference.partition(":")[0] in sys.modules:
            prefork_warm(pool)  # when it is safe: see stamen.workers.launcher.fork_blocker
        return run(simulate())
    with concurrent.futures.ThreadPoolExecutor(1, "stamen-simulation") as thread:
        return thread.submit(lambda: run(simulate())).result()


def _flower_options(backend_name: str, enable_tf_gpu_growth: bool, verbose: bool) -> None:
    if not isinstance(backend_name, str):
        raise TypeError(
            "run_simulation's fourth positional argument is backend_name, as in Flower: "
            "pass backend_config=... (and run_config=...) by keyword"
        )
    if backend_name != "ray":
        raise ConfigError(
            f"backend_name {backend_name!r} is not known: Stamen has one simulation backend, "
            'its worker pool, named "ray" for Flower\'s sake'
        )
    if enable_tf_gpu_growth:
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # inherited by the workers
    if verbose:
        logging.getLogger("stamen").setLevel(logging.DEBUG)


async def run_simulation_async(
    server_app: ServerApp | str,
    client_app: ClientApp | str,
    num_supernodes: int,
    backend_config: BackendConfig | Mapping[str, Any] | str | None = None,
    run_config: UserConfig | None = None,
    *,
    seed: int | None = None,
    directory: str | Path | None = None,
    observer: RunObserver | None = None,
    pool: WorkerPool | None = None,
    dashboard_address: str | None = None,
) -> History:
    """`run_simulation` in the caller's event loop; `observer` hears each batch of
    instructions and replies (the CLI's progress line). `pool`: the worker pool for the
    ClientApp (`backend.worker_pool`), made, and perhaps preforked, before the loop
    started; it is started and closed here (default: a new one). `dashboard_address`:
    serve the SuperLink's dashboard there while the simulation runs."""
    plan = _plan(
        server_app, client_app, num_supernodes, backend_config, run_config, seed, directory
    )
    return await _simulate(plan, server_app, num_supernodes, pool, observer, dashboard_address)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A simulation's arguments, checked before anything starts."""

    backend: BackendConfig
    client: AppRef
    folder: Path | None
    run_config: UserConfig


def _plan(
    server_app: ServerApp | str,
    client_app: ClientApp | str,
    num_supernodes: int,
    backend_config: BackendConfig | Mapping[str, Any] | str | None,
    run_config: UserConfig | None,
    seed: int | None,
    directory: str | Path | None,
) -> _Plan:
    if num_supernodes < 1:
        raise ConfigError(f"num_supernodes must be at least 1, got {num_supernodes}")
    backend = parse_backend_config(backend_config)
    folder = None if directory is None else Path(directory)
    config = dict(run_config or {})
    if seed is not None:
        config["seed"] = seed
    client = client_app_ref(client_app, folder)
    if isinstance(server_app, str):  # a typo fails here, before any worker starts
        check_reference(server_app, folder)
    return _Plan(backend, client, folder, config)


async def _simulate(
    plan: _Plan,
    server_app: ServerApp | str,
    num_supernodes: int,
    pool: WorkerPool | None,
    observer: RunObserver | None,
    dashboard_address: str | None = None,
) -> History:
    with _garbage_frozen():
        async with open_simulation(
            plan.client, num_supernodes, plan.backend, pool=pool, dashboard=dashboard_address
        ) as sim:
            app, server_ref = server_app_of(server_app, plan.folder)
            return await sim.run(
                app, server_app_ref=server_ref, run_config=plan.run_config, observer=observer
            )


@dataclass(frozen=True, slots=True)
class Simulation:
    """A running federation: the SuperLink, with the virtual nodes registered and the
    worker pool started (see `open_simulation`)."""

    link: SuperLink
    client_app: AppRef
    nodes: VirtualNodes

    async def run(
        self,
        server_app: ServerApp,
        *,
        server_app_ref: str = "",
        run_config: UserConfig | None = None,
        observer: RunObserver | None = None,
    ) -> History:
        """Run `server_app` once over the virtual nodes; its History."""
        serverappio: ServerAppIoApi = _WakingServerAppIo(self.link.serverappio, self.nodes)
        if observer is not None:
            serverappio = ObservedServerAppIo(serverappio, observer)
        return await run_serverapp(
            serverappio,
            server_app,
            server_app_ref=server_app_ref,
            client_app_ref=self.client_app.reference,
            run_config=dict(run_config or {}),
            checkpoints=False,  # the run lives and dies with this process
        )


@contextlib.asynccontextmanager
async def open_simulation(
    client_app: AppRef,
    num_supernodes: int,
    backend: BackendConfig,
    *,
    pool: WorkerPool | None = None,
    dashboard: str | None = None,
) -> AsyncIterator[Simulation]:
    """Start the worker pool (`pool`, or a new one that `backend` describes), the
    SuperLink and `num_supernodes` registered virtual nodes; stop them all on exit
    (workers killed if need be, shared memory unlinked). `dashboard`: an address to
    serve the SuperLink's dashboard on, for the block.

    A ClientApp that does not load in the workers ends the block with AppLoadError
    (`pool.started()` raises it, and the task group cancels the block).
    """
    if num_supernodes < 1:
        raise ConfigError(f"num_supernodes must be at least 1, got {num_supernodes}")
    began = time.perf_counter()
    if pool is None:
        pool = worker_pool(client_app.reference, client_app.directory, backend)
    link = SuperLink(MemoryLinkState(), MemoryObjectStore(), heartbeat_interval=HEARTBEAT_INTERVAL)
    with _quiet(CHATTY_LOGGERS):
        async with pool, link, observed_link(link, dashboard_address=dashboard) as observed:
            if observed.dashboard_url:
                logger.info("dashboard at %s", observed.dashboard_url)
            try:
                async with asyncio.TaskGroup() as tasks:
                    loading = tasks.create_task(pool.started(), name="stamen-simulation-loading")
                    nodes = VirtualNodes(MemoryFleet(observed.fleet), pool, num_supernodes, tasks)
                    async with asyncio.timeout(NODE_START_TIMEOUT):
                        await nodes.register()
                    logger.info(
                        "%d virtual SuperNodes registered in %.2fs",
                        num_supernodes,
                        time.perf_counter() - began,
                    )
                    try:
                        yield Simulation(link, client_app, nodes)
                    finally:
                        loading.cancel()  # a run that ended needs no news of the workers
                        nodes.stop()
            except BaseExceptionGroup as group:
                raise _sole(group) from None


class _WakingServerAppIo(MemoryServerAppIo):
    """The ServerApp's `ServerAppIoApi`: pushing instructions starts the agents of the
    nodes they go to (`VirtualNodes.wake`)."""

    def __init__(self, handler: ServerAppIoApi, nodes: VirtualNodes) -> None:
        super().__init__(handler)
        self._nodes = nodes

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        result = await super().push_messages(run_id, envelopes)
        self._nodes.wake(envelope.metadata.dst_node_id for envelope in envelopes)
        return result


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside (nested) groups, or the group itself when there are several."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    causes = [e for e in leaves if not isinstance(e, asyncio.CancelledError)] or leaves
    return causes[0] if len(causes) == 1 else group


@contextlib.contextmanager
def _garbage_frozen() -> Iterator[None]:
    """Keep the objects that exist now out of garbage collections until the block ends
    (unless someone froze objects already: their choice stands)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    changed = []
    for name in names:
        log = logging.getLogger(name)
        if log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            log.setLevel(logging.WARNING)
            changed.append(log)
    try:
        yield
    finally:
        for log in changed:
            log.setLevel(logging.NOTSET)
