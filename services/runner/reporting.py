"""RoundReporter: the round hook through which a runner tells the SuperLink each round's
duration and numeric metrics (ServerAppIo `ReportRound`), for its dashboard and metrics.

It runs in the ServerApp's thread and waits (boundedly) for the SuperLink's answer, so
reports arrive in order. A report that fails is logged once per run and the run goes on:
dashboards are a view, never a reason to stop training.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from stamen.server.tracking import RoundReport
from stamen.transport.api import ServerAppIoApi

__all__ = ["REPORT_TIMEOUT", "RoundReporter"]

logger = logging.getLogger(__name__)

REPORT_TIMEOUT = 10.0
"""Seconds the ServerApp's thread waits for one report (retries included)."""


class RoundReporter:
    """A `stamen.server.tracking` hook that sends rounds of run `run_id` to `serverappio`,
    whose calls run on `loop`."""

    def __init__(
        self, serverappio: ServerAppIoApi, run_id: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._api = serverappio
        self._run_id = run_id
        self._loop = loop
        self._failed = False

    def __call__(self, report: RoundReport) -> None:
        metrics = {
            name: float(value)
            for name, value in report.metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        call = self._api.report_round(
            self._run_id, report.server_round, report.seconds or 0.0, metrics
        )
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        try:
            future.result(REPORT_TIMEOUT)
        except (Exception, concurrent.futures.CancelledError) as exc:
            future.cancel()
            if not self._failed:
                self._failed = True
                logger.warning(
                    "run %d: the SuperLink did not take round %d's report (%s); "
                    "its dashboard will lack this run's rounds",
                    self._run_id,
                    report.server_round,
                    type(exc).__name__ if not str(exc) else str(exc).splitlines()[0],
                    extra={"run_id": self._run_id},
                )
