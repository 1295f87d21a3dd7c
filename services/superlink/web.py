"""The SuperLink's HTTP side: Prometheus `/metrics` and the dashboard, when asked for.

`observed(link, settings)` starts what `--metrics-address` and `--dashboard-address`
ask for and yields the Fleet and ServerAppIo APIs to serve: the handlers themselves when
both are off (nothing is counted), else the handlers wrapped to count and time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from stamen.transport.api import FleetApi, ServerAppIoApi

from .settings import SuperLinkSettings
from .superlink import SuperLink

if TYPE_CHECKING:
    from .dashboard import Authorize

__all__ = ["observed"]

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def observed(
    link: SuperLink, settings: SuperLinkSettings, *, authorize: Authorize | None = None
) -> AsyncIterator[tuple[FleetApi, ServerAppIoApi]]:
    """Serve metrics and the dashboard for the block, as the settings say; yields the
    (perhaps instrumented) Fleet and ServerAppIo APIs. ConfigError for an address that
    cannot be bound."""
    if settings.metrics_address is None and settings.dashboard_address is None:
        yield link.fleet, link.serverappio
        return
    # Imported only when asked for: uvicorn, starlette and prometheus_client take a
    # noticeable part of a second to import.
    from stamen.common.webserver import http_server, metrics_app

    from .dashboard import dashboard_app
    from .telemetry import InstrumentedFleet, InstrumentedServerAppIo, SuperLinkMetrics

    metrics = SuperLinkMetrics(link)
    link.observe(metrics)
    async with contextlib.AsyncExitStack() as servers:
        if settings.metrics_address is not None:
            bound = await servers.enter_async_context(
                http_server(metrics_app(metrics.registry), settings.metrics_address)
            )
            logger.info("Prometheus metrics at http://%s/metrics", bound)
        if settings.dashboard_address is not None:
            app = dashboard_app(link, metrics, authorize=authorize)
            certificates = settings.certificates
            tls = None if certificates is None else (certificates.cert, certificates.key)
            bound = await servers.enter_async_context(
                http_server(app, settings.dashboard_address, tls=tls)
            )
            logger.info("dashboard at %s://%s/", "http" if tls is None else "https", bound)
        yield (
            InstrumentedFleet(link.fleet, metrics),
            InstrumentedServerAppIo(link.serverappio, metrics),
        )
