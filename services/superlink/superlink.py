"""SuperLink: the hub's logic as one object, independent of any transport.

It owns the state, the object store and the clock, exposes the three API handlers
(`fleet`, `serverappio`, `control`) for a transport to serve (gRPC) or hand out directly
(memory), and, while entered as an async context manager, runs the liveness sweep in its
own TaskGroup. Leaving the context ends pending long-polls and closes the state.

    async with open_superlink("state.db") as link:
        ...  # serve link.fleet, link.serverappio, link.control
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType

from stamen.common.clock import SYSTEM_CLOCK, Clock
from stamen.common.errors import ConfigError, TransientError

from .control import ControlHandler
from .core import DEFAULT_HEARTBEAT_INTERVAL
from .deliveries import DEFAULT_DELIVERY_LEASE
from .fleet import FleetHandler
from .leases import DEFAULT_RUN_LEASE, RunLeases
from .linkstate import LinkState
from .memorystate import MemoryLinkState
from .objectstore import FileObjectStore, MemoryObjectStore, ObjectStore
from .rounds import RoundBook
from .router import Router, RouterEvents
from .runfiles import RunFiles
from .serverappio import ServerAppIoHandler
from .sqlitestate import SqliteLinkState

__all__ = ["SuperLink", "open_superlink"]

logger = logging.getLogger(__name__)


class SuperLink:
    """The SuperLink's state, object store, handlers and background work.

    `sweep_interval` (default: half the heartbeat interval) is how often the background
    sweep looks for nodes past their deadline and messages past their TTL; tests call
    `sweep()` directly with a `FakeClock` instead.
    """

    def __init__(
        self,
        state: LinkState,
        store: ObjectStore,
        *,
        clock: Clock | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        sweep_interval: float | None = None,
        run_lease: float = DEFAULT_RUN_LEASE,
        delivery_lease: float = DEFAULT_DELIVERY_LEASE,
        files: RunFiles | None = None,
    ) -> None:
        self._router = Router(
            state, store, clock or SYSTEM_CLOCK, heartbeat_interval, delivery_lease
        )
        self.files = files
        self.fleet = FleetHandler(self._router, files)
        self.serverappio = ServerAppIoHandler(self._router, RunLeases(run_lease))
        self.control = ControlHandler(self._router, files)
        self.sweep_interval = heartbeat_interval / 2 if sweep_interval is None else sweep_interval
        self._stopping = asyncio.Event()
        self._lifespan: AbstractAsyncContextManager[None] | None = None
        self._closed = False

    @property
    def state(self) -> LinkState:
        return self._router.state

    @property
    def store(self) -> ObjectStore:
        return self._router.store

    @property
    def heartbeat_interval(self) -> float:
        return self._router.liveness.interval

    @property
    def rounds(self) -> RoundBook:
        """The rounds that runs reported (ServerAppIo ReportRound), newest last."""
        return self._router.rounds

    def observe(self, events: RouterEvents) -> None:
        """Tell `events` of error replies and missed heartbeats from now on (metrics)."""
        self._router.events = events

    def sweep(self) -> None:
        """Mark nodes past their deadline offline, answer or drop expired messages
        (their pending instructions get error replies), and fail runs whose runner's lease
        lapsed."""
        self._router.sweep()
        self.serverappio.expire_leases()

    def stop_waiting(self) -> None:
        """End every long-poll now and make new ones return at once: call it when
        shutting down, before draining the servers."""
        self._router.close()

    def close(self) -> None:
        """Close the state (idempotent). Entering the SuperLink does this on exit."""
        if not self._closed:
            self._closed = True
            self._router.close()
            self._router.state.close()
            if self.files is not None:
                self.files.close()

    async def __aenter__(self) -> SuperLink:
        if self._lifespan is not None or self._closed:
            raise RuntimeError("a SuperLink runs once")
        self._lifespan = self._running()
        await self._lifespan.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._lifespan is not None
        return await self._lifespan.__aexit__(exc_type, exc, traceback)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        body_error: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._sweep_periodically(), name="superlink-sweep")
                try:
                    yield
                except BaseException as exc:
                    # Raised again below, as itself rather than inside an ExceptionGroup,
                    # once the background work has stopped.
                    body_error = exc
                finally:
                    self._router.close()
                    self._stopping.set()
            if body_error is not None:
                raise body_error
        finally:
            self.close()

    async def _sweep_periodically(self) -> None:
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.sweep_interval):
                    await self._stopping.wait()
            except TimeoutError:
                try:
                    self.sweep()
                except TransientError as exc:  # storage logged the fault once already
                    logger.debug("liveness sweep failed: %s", exc)
                except Exception:
                    # A failed sweep (a full disk, say) must not take the SuperLink down;
                    # the next one tries again.
                    logger.exception("liveness sweep failed")


def open_superlink(
    database: str,
    *,
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    run_lease: float = DEFAULT_RUN_LEASE,
    delivery_lease: float = DEFAULT_DELIVERY_LEASE,
    clock: Clock | None = None,
) -> SuperLink:
    """A SuperLink over ":memory:" state, or over the SQLite file `database` with its
    objects in the directory `<database>.objects/`. ConfigError when it cannot open."""
    if database == ":memory:":
        return SuperLink(
            MemoryLinkState(),
            MemoryObjectStore(),
            clock=clock,
            heartbeat_interval=heartbeat_interval,
            run_lease=run_lease,
            delivery_lease=delivery_lease,
            files=RunFiles(),
        )
    try:
        state = SqliteLinkState(database)
    except (sqlite3.Error, TransientError) as exc:  # locked, read-only, full, ...
        raise ConfigError(f"cannot open the SuperLink database {database!r}: {exc}") from None
    try:
        store = FileObjectStore(f"{database}.objects")
        files = RunFiles(f"{database}.runs")
        link = SuperLink(
            state,
            store,
            clock=clock,
            heartbeat_interval=heartbeat_interval,
            run_lease=run_lease,
            delivery_lease=delivery_lease,
            files=files,
        )
    except OSError as exc:
        state.close()
        raise ConfigError(f"cannot open the object store next to {database!r}: {exc}") from None
    except BaseException:
        state.close()
        raise
    logger.info("SuperLink state in %s", database)
    return link
