"""HTTP beside a service's gRPC: `/metrics` for Prometheus, the SuperLink's dashboard.

`http_server(app, address)` serves an ASGI app (starlette) with uvicorn in the
service's own event loop, on a socket bound before it returns (port 0: any free port),
and stops it when the block ends. uvicorn installs no signal handlers here: the CLI owns
signals. `metrics_app(registry)` is the app that answers `GET /metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from stamen.transport.grpc.server import listen, socket_address

__all__ = ["STOP_TIMEOUT", "http_server", "metrics_app", "metrics_route"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0
"""Seconds an HTTP server gets to close its connections when its block ends."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handling (the CLI's handlers stay in charge)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def http_server(
    app: ASGIApp,
    address: str,
    *,
    tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
) -> AsyncIterator[str]:
    """Serve `app` on `address` (HOST:PORT) for the block, over HTTPS when `tls` gives a
    certificate and key file; yields the bound address. ConfigError when the address
    cannot be bound."""
    sock = listen(address)
    bound = socket_address(sock)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        ssl_certfile=None if tls is None else tls[0],
        ssl_keyfile=None if tls is None else tls[1],
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http-{bound}")
    try:
        yield bound
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            sock.close()


def metrics_route(registry: CollectorRegistry) -> Route:
    """`GET /metrics`: the registry in Prometheus' text format."""

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics)


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """An app that serves only `/metrics`."""
    return Starlette(routes=[metrics_route(registry)])
