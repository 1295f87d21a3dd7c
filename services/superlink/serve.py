"""serve(): the SuperLink as a service: its three APIs on gRPC, until told to stop.

Start-up: check the TLS files, bind the three sockets (port 0 = any free port), open the
SuperLink (state, object store, heartbeats), start the servers, log the bound addresses
and resolve `ready` with them. Shutdown in stages, when `stop` is set: refuse new calls
and end long-polls (`Drain`), wait up to the grace period for the calls in flight, end
the rest with UNAVAILABLE (clients retry), close the servers, close the SuperLink.
Cancelling `serve()` skips the waits: the servers cancel their calls. Only the CLI
installs signal handlers; it sets `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

from grpclib.server import Server
from stamen.common.config import split_address
from stamen.transport.grpc.drain import Drain
from stamen.transport.grpc.nodekeys import NodeKeysServicer
from stamen.transport.grpc.server import api_server, listen, socket_address
from stamen.transport.grpc.servicers import ControlServicer, FleetServicer, ServerAppIoServicer
from stamen.transport.grpc.tls import server_context

from .auth import Credentials, log_security
from .launcher import RunnerLauncher
from .settings import SuperLinkSettings
from .superlink import SuperLink, open_superlink
from .web import dashboard_check, observed

__all__ = ["Listening", "serve"]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
"""Seconds to wait for ended or cancelled calls to finish."""


@dataclass(frozen=True, slots=True)
class Listening:
    """The addresses the three APIs are bound to (the real ports when 0 was asked)."""

    fleet: str
    serverappio: str
    control: str


async def serve(
    settings: SuperLinkSettings,
    *,
    ready: asyncio.Future[Listening] | None = None,
    stop: asyncio.Event | None = None,
    credentials: Credentials | None = None,
) -> None:
    """Serve until `stop` is set (or forever), then shut down in stages.

    `credentials` (made from `settings` when None) decide who may call each API.

    `ready` gets the bound addresses once all three APIs serve; await it next to the task
    that runs `serve()`, since a start-up error (ConfigError for a bad certificate, an
    address in use or a database that does not open) ends that task instead.
    """
    certificates = settings.certificates
    tls = None
    if certificates is not None:
        tls = server_context(certificates.ca, certificates.cert, certificates.key)
    if credentials is None:
        credentials = Credentials(settings)
    with contextlib.ExitStack() as sockets:
        fleet_socket = sockets.enter_context(listen(settings.fleet_api_address))
        serverappio_socket = sockets.enter_context(listen(settings.serverappio_api_address))
        control_socket = sockets.enter_context(listen(settings.control_api_address))
        fleet_auth, operator_auth = credentials.fleet(), credentials.operators
        async with (
            open_superlink(
                settings.database,
                heartbeat_interval=settings.heartbeat_interval,
                run_lease=settings.run_lease,
                delivery_lease=settings.delivery_lease,
            ) as link,
            observed(link, settings, authorize=dashboard_check(operator_auth)) as (
                fleet,
                serverappio,
            ),
            _launcher(
                link,
                settings,
                socket_address(serverappio_socket),
                socket_address(fleet_socket),
                credentials,
            ) as launcher,
        ):
            link.control.launcher = launcher
            link.control.max_bundle_size = int(settings.max_bundle_size * 2**20)
            drain = Drain()
            servers: list[Server] = []
            try:
                for servicer, sock in (
                    (FleetServicer(fleet, drain, fleet_auth), fleet_socket),
                    (
                        ServerAppIoServicer(serverappio, drain, credentials.serverappio),
                        serverappio_socket,
                    ),
                    (ControlServicer(link.control, drain, operator_auth), control_socket),
                ):
                    more = []
                    if isinstance(servicer, ControlServicer):  # on the same port
                        more.append(NodeKeysServicer(credentials.node_keys, drain, operator_auth))
                    server = api_server(servicer, *more)
                    await server.start(sock=sock, ssl=tls)
                    servers.append(server)
                listening = Listening(
                    socket_address(fleet_socket),
                    socket_address(serverappio_socket),
                    socket_address(control_socket),
                )
                _log_listening(listening, settings, tls_on=tls is not None)
                if ready is not None:
                    ready.set_result(listening)
                await (asyncio.Event() if stop is None else stop).wait()
                # Runners first: they record their runs as stopped over ServerAppIo.
                await launcher.stop_all()
                drain.close()
                link.stop_waiting()
                await _drain(drain, settings.grace_period)
            finally:
                await _close(servers)
    logger.info("SuperLink stopped")


def _launcher(
    link: SuperLink,
    settings: SuperLinkSettings,
    serverappio: str,
    fleet: str,
    credentials: Credentials,
) -> RunnerLauncher:
    """Runner processes for submitted runs, which reach ServerAppIo on the loopback (each
    with a launch token of its own when operators need tokens) and tell SuperNodes to use
    the Fleet API on this machine's name when it listens on all."""
    host, port = split_address(serverappio)
    loopback = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    fleet_host, fleet_port = split_address(fleet)
    if fleet_host in ("0.0.0.0", "::", ""):
        fleet_host = socket.gethostname()
    elif ":" in fleet_host:
        fleet_host = f"[{fleet_host}]"
    certificates = settings.certificates
    assert link.files is not None  # open_superlink always keeps run files
    return RunnerLauncher(
        link.files,
        f"{loopback}:{port}",
        root_certificates=None if certificates is None else certificates.ca,
        tokens=None if credentials.operators.tokens is None else credentials.launched,
        fleet_address=f"{fleet_host}:{fleet_port}",
    )


async def _drain(drain: Drain, grace_period: float) -> None:
    """Wait up to the grace period for the calls in flight, then end them (UNAVAILABLE)."""
    if drain.calls:
        logger.info(
            "shutting down: waiting up to %gs for %d call(s) in flight", grace_period, drain.calls
        )
    try:
        async with asyncio.timeout(grace_period):
            await drain.idle()
    except TimeoutError:
        logger.warning(
            "%d call(s) still running after the %gs grace period: ending them",
            drain.calls,
            grace_period,
        )
        drain.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await drain.idle()


async def _close(servers: list[Server]) -> None:
    for server in servers:
        server.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            for server in servers:
                await server.wait_closed()
    except TimeoutError:
        logger.warning("calls did not finish within %gs of being cancelled", CLOSE_TIMEOUT)


def _log_listening(listening: Listening, settings: SuperLinkSettings, *, tls_on: bool) -> None:
    security = "TLS" if tls_on else "insecure, no TLS"
    logger.info("Fleet API listening on %s (%s)", listening.fleet, security)
    logger.info("ServerAppIo API listening on %s (%s)", listening.serverappio, security)
    logger.info("Control API listening on %s (%s)", listening.control, security)
    log_security(settings, listening.serverappio, listening.control)
    logger.info(
        "SuperLink ready: state in %s, heartbeat interval %gs",
        "memory (not kept)" if settings.database == ":memory:" else settings.database,
        settings.heartbeat_interval,
    )
