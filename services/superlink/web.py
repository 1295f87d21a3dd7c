"""The SuperLink's HTTP side: Prometheus `/metrics` and the dashboard, when asked for.

`observed(link, settings)` starts what `--metrics-address` and `--dashboard-address`
ask for and yields the Fleet and ServerAppIo APIs to serve: the handlers themselves when
both are off (nothing is counted), else the handlers wrapped to count and time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stamen.auth.authority import AUTHORIZATION_HEADER
from stamen.common.errors import StamenError
from stamen.transport.api import FleetApi, ServerAppIoApi

from .settings import SuperLinkSettings
from .superlink import SuperLink

if TYPE_CHECKING:
    from stamen.auth.authority import OperatorAuthority
    from starlette.requests import Request

    from .dashboard import Authorize

__all__ = ["Observed", "dashboard_check", "observed", "observed_link"]

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def observed(
    link: SuperLink, settings: SuperLinkSettings, *, authorize: Authorize | None = None
) -> AsyncIterator[tuple[FleetApi, ServerAppIoApi]]:
    """Serve metrics and the dashboard for the block, as the settings say; yields the
    (perhaps instrumented) Fleet and ServerAppIo APIs. ConfigError for an address that
    cannot be bound."""
    certificates = settings.certificates
    async with observed_link(
        link,
        metrics_address=settings.metrics_address,
        dashboard_address=settings.dashboard_address,
        tls=None if certificates is None else (certificates.cert, certificates.key),
        authorize=authorize,
    ) as served:
        yield served.fleet, served.serverappio


@dataclass(frozen=True, slots=True)
class Observed:
    """The APIs to serve (instrumented when anything observes them) and the URLs of
    what is served over HTTP ("" when off)."""

    fleet: FleetApi
    serverappio: ServerAppIoApi
    metrics_url: str = ""
    dashboard_url: str = ""


@contextlib.asynccontextmanager
async def observed_link(
    link: SuperLink,
    *,
    metrics_address: str | None = None,
    dashboard_address: str | None = None,
    tls: tuple[Path, Path] | None = None,
    authorize: Authorize | None = None,
) -> AsyncIterator[Observed]:
    """`observed`, for any SuperLink (the simulation's too): `tls` is the dashboard's
    certificate and key files (HTTPS), `authorize` its check of operators."""
    if metrics_address is None and dashboard_address is None:
        yield Observed(link.fleet, link.serverappio)
        return
    # Imported only when asked for: uvicorn, starlette and prometheus_client take a
    # noticeable part of a second to import.
    from stamen.common.webserver import http_server, metrics_app

    from .dashboard import dashboard_app
    from .telemetry import InstrumentedFleet, InstrumentedServerAppIo, SuperLinkMetrics

    metrics = SuperLinkMetrics(link)
    link.observe(metrics)
    metrics_url = dashboard_url = ""
    async with contextlib.AsyncExitStack() as servers:
        if metrics_address is not None:
            bound = await servers.enter_async_context(
                http_server(metrics_app(metrics.registry), metrics_address)
            )
            metrics_url = f"http://{bound}/metrics"
            logger.info("Prometheus metrics at %s", metrics_url)
        if dashboard_address is not None:
            app = dashboard_app(link, metrics, authorize=authorize)
            bound = await servers.enter_async_context(http_server(app, dashboard_address, tls=tls))
            dashboard_url = f"{'http' if tls is None else 'https'}://{bound}/"
            logger.info("dashboard at %s", dashboard_url)
        yield Observed(
            InstrumentedFleet(link.fleet, metrics),
            InstrumentedServerAppIo(link.serverappio, metrics),
            metrics_url,
            dashboard_url,
        )


def dashboard_check(operators: OperatorAuthority) -> Authorize | None:
    """The dashboard asks for what Control and ServerAppIo ask for: the operator's bearer
    token, when the SuperLink has `--auth-operator-tokens` (None: open, as they are)."""
    if operators.tokens is None:
        return None

    async def authorize(request: Request) -> bool:
        client = request.client
        peer = None if client is None else (client.host, client.port)
        metadata = {AUTHORIZATION_HEADER: request.headers.get("authorization", "")}
        try:
            operators.authenticate("Dashboard.State", metadata, peer)
        except StamenError:
            return False
        return True

    return authorize
