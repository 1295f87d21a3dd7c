"""run_serverapp: one run of a ServerApp against a SuperLink's ServerAppIo API.

The runner creates (or joins) the run, hands the ServerApp a Grid and a Context, runs it in
a worker thread (user code never blocks the event loop) while it holds the run's lease
(`lease`: no second runner drives the run), and records how the run ended:
completed, failed (with one line saying why) or stopped. Deployment and simulation share
it; only the ServerAppIoApi they pass differs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from stamen.common.context import Context
from stamen.common.errors import (
    RunLeaseHeldError,
    RunNotRunningError,
    ServerAppError,
    StamenError,
)
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus
from stamen.server.grid import Grid
from stamen.server.history import History
from stamen.server.tracking import scoped_round_hook
from stamen.transport.api import ServerAppIoApi

from .grid import POLL_TIMEOUT, ServerAppIoGrid
from .lease import RunLease
from .reporting import RoundReporter

__all__ = ["ServerAppFn", "run_serverapp"]

logger = logging.getLogger(__name__)

ServerAppFn = Callable[[Grid, Context], History]
"""What the runner runs: a `ServerApp`, or any callable of the same shape."""

FINISH_TIMEOUT = 120.0
"""Seconds to record a run's end, retries included."""
STOP_TIMEOUT = 5.0
"""Seconds to record that a run was stopped (the process is shutting down)."""
LEASE_WAITS = 3
"""Times `resume` waits for a lease held by another (maybe dead) runner to lapse."""
LAPSE_SLACK = 3.0
"""Seconds past a lease's end before asking again: the SuperLink's sweep marks the run."""


async def run_serverapp(
    serverappio: ServerAppIoApi,
    server_app: ServerAppFn,
    *,
    server_app_ref: str,
    client_app_ref: str = "",
    run_config: UserConfig,
    run_id: int | None = None,
    resume: int | None = None,
    checkpoints: bool = True,
    poll_timeout: float = POLL_TIMEOUT,
    fleet_address: str | None = None,
) -> History:
    """Run `server_app` to its end as run `run_id` (a new run when None); return its History.

    Raises ServerAppError (chaining the app's exception) when the app raises, after marking
    the run failed; a run stopped from outside (the Control API) raises RunNotRunningError.
    Cancelled, it marks the run stopped and re-raises.

    `resume`: continue run `resume` from its last checkpoint (the round loop's, taken after
    each round): a run still running is driven again (once its runner's lease is free: a
    lease held by a runner that died is waited out), a finished one (failed, stopped) goes
    on as a new run with the same config.
    `checkpoints=False` takes none (a simulation: its run dies with its process).
    `fleet_address`: where SuperNodes connect (a deployment's Fleet API), which the
    grid's `fleet_address` tells a ServerApp that waits for nodes.
    """
    run, lease, resume_from = await _leased_run(
        serverappio, server_app_ref, client_app_ref, run_config, run_id, resume
    )
    run_id = run.run_id
    if run.status == RunStatus.PENDING:
        await serverappio.update_run_status(run_id, RunStatus.RUNNING)
    context = Context(
        run_id=run_id, node_id=0, node_config={}, run_config={**run.run_config, **run_config}
    )
    grid = ServerAppIoGrid(
        serverappio,
        run,
        asyncio.get_running_loop(),
        poll_timeout=poll_timeout,
        resume_from=resume_from,
        checkpoints=checkpoints,
        fleet_address=fleet_address,
    )
    where = "" if fleet_address is None else f"; SuperNodes connect to {fleet_address} (Fleet API)"
    logger.info(
        "run %d: starting ServerApp %s%s",
        run_id,
        server_app_ref or "(in-process)",
        where,
        extra={"run_id": run_id},
    )
    start = time.perf_counter()
    try:
        reporter = RoundReporter(serverappio, run_id, asyncio.get_running_loop())
        with scoped_round_hook(reporter):  # the thread below inherits this context
            async with lease.kept():
                history = await asyncio.to_thread(server_app, grid, context)
    except asyncio.CancelledError:
        grid.close()
        logger.warning("run %d: stopping the ServerApp", run_id, extra={"run_id": run_id})
        await _finish(
            serverappio,
            run_id,
            RunStatus.STOPPED,
            "the ServerApp runner was stopped",
            STOP_TIMEOUT,
        )
        raise
    except RunNotRunningError as exc:
        grid.close()
        if exc.run_id != run_id:
            raise await _failed(serverappio, run_id, exc) from exc
        logger.warning(
            "run %d was %s from outside; the ServerApp ends",
            run_id,
            exc.run_status,
            extra={"run_id": run_id},
        )
        raise
    except Exception as exc:  # user code may raise anything
        grid.close()
        raise await _failed(serverappio, run_id, exc) from exc
    grid.close()
    await _finish(serverappio, run_id, RunStatus.COMPLETED, "", FINISH_TIMEOUT)
    logger.info(
        "run %d: completed in %.2fs",
        run_id,
        time.perf_counter() - start,
        extra={"run_id": run_id},
    )
    return history


async def _leased_run(
    serverappio: ServerAppIoApi,
    server_app_ref: str,
    client_app_ref: str,
    run_config: UserConfig,
    run_id: int | None,
    resume: int | None,
) -> tuple[Run, RunLease, int | None]:
    """The run to drive with this runner's lease on it, and the run whose checkpoint it
    starts from (None: its own)."""
    waits = 0
    while True:
        resume_from = None
        if resume is not None:
            run_id, resume_from = await _resumed(
                serverappio, resume, server_app_ref, client_app_ref
            )
        if run_id is None:
            run_id = await serverappio.create_run(server_app_ref, client_app_ref, run_config)
        run = await serverappio.get_run(run_id)
        if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
            raise RunNotRunningError(run_id, run.status)
        lease = RunLease(serverappio, run_id)
        try:
            await lease.take()  # refused while another runner drives the run
        except RunLeaseHeldError as exc:
            if resume is None or waits == LEASE_WAITS:
                raise
            waits += 1
            logger.warning(
                "run %d: another runner holds its lease (it may have died): waiting %.0fs "
                "for the lease to lapse",
                run_id,
                exc.remaining,
                extra={"run_id": run_id},
            )
            await asyncio.sleep(exc.remaining + LAPSE_SLACK)
            continue
        return run, lease, resume_from


async def _resumed(
    serverappio: ServerAppIoApi, resume: int, server_app_ref: str, client_app_ref: str
) -> tuple[int, int | None]:
    """The run to drive to resume run `resume`, and the run whose checkpoint it starts
    from (None: its own)."""
    old = await serverappio.get_run(resume)
    if old.status != RunStatus.FINISHED:
        return resume, None
    run_id = await serverappio.create_run(
        server_app_ref or old.server_app, client_app_ref or old.client_app, old.run_config
    )
    logger.info(
        "run %d continues run %d (%s) from its last checkpoint",
        run_id,
        resume,
        old.sub_status,
        extra={"run_id": run_id},
    )
    return run_id, resume


def _describe(error: BaseException) -> str:
    """One line naming an error: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


async def _failed(serverappio: ServerAppIoApi, run_id: int, error: Exception) -> ServerAppError:
    logger.error("run %d: the ServerApp raised", run_id, exc_info=error, extra={"run_id": run_id})
    details = _describe(error)
    await _finish(serverappio, run_id, RunStatus.FAILED, details, FINISH_TIMEOUT)
    return ServerAppError(run_id, details)


async def _finish(
    serverappio: ServerAppIoApi, run_id: int, sub_status: str, details: str, timeout: float
) -> None:
    """Record the run's end; a failure to record it is logged, never raised over the result."""
    try:
        async with asyncio.timeout(timeout):
            await serverappio.update_run_status(run_id, RunStatus.FINISHED, sub_status, details)
    except (StamenError, TimeoutError) as exc:
        logger.warning(
            "run %d: could not mark it %s/%s: %s",
            run_id,
            RunStatus.FINISHED,
            sub_status,
            _describe(exc),
            extra={"run_id": run_id},
        )
