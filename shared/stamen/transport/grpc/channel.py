"""Connecting to a SuperLink API: channels, health checks, and what a failure means.

A TLS mistake otherwise surfaces as a bare `SSLError`, `ConnectionResetError` or
"Connection lost" on the first call; `connection_failure` turns it into one line that says
what is likely wrong (a TLS client at a plaintext server, a plaintext client at a TLS
server, an untrusted certificate). Deterministic mismatches are `ConfigError` (retrying
cannot help); a refused or dropped connection is `UnavailableError` (retry with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from stamen.common.config import split_address
from stamen.common.errors import ConfigError, StamenError, UnavailableError
from stamen.common.heap import keep_chunk_buffers

from . import h2patch
from .errors import FailureCodec, from_grpc
from .limits import BoundedProtoCodec
from .tls import client_context

__all__ = [
    "CONNECTION_ERRORS",
    "SuperLinkChannel",
    "check_health",
    "connect",
    "connection_failure",
    "explain_failure",
    "is_wrong_api",
    "wrong_api",
]

CONNECTION_ERRORS = (OSError, StreamTerminatedError)
"""What grpclib raises when the peer cannot be reached or goes away (`ssl.SSLError`,
`ConnectionError` and `TimeoutError` are `OSError`s)."""


class SuperLinkChannel(Channel):
    """A grpclib `Channel` that remembers its address and whether it uses TLS."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(
            host,
            port,
            ssl=ssl_context,
            codec=BoundedProtoCodec(),
            status_details_codec=FailureCodec(),
        )
        self.endpoint = (host, port)
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.tls = ssl_context is not None


def connect(address: str, *, root_certificates: Path | None, insecure: bool) -> Channel:
    """A channel to `address` (call inside the event loop; close it when done).

    TLS unless `insecure`: trusting `root_certificates`, or the system's roots when None.
    The connection itself opens on the first call.
    """
    if insecure and root_certificates is not None:
        raise ConfigError("--insecure and --root-certificates exclude each other: pass one")
    host, port = split_address(address)
    context = None if insecure else client_context(root_certificates)
    h2patch.install()
    keep_chunk_buffers()  # object streams reuse their ~1 MiB buffers
    return SuperLinkChannel(host, port, ssl_context=context)


async def check_health(channel: Channel, *, timeout: float) -> None:
    """Return if the server behind `channel` reports SERVING within `timeout` seconds."""
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=timeout)
    except GRPCError as exc:
        raise from_grpc(exc) from exc
    except CONNECTION_ERRORS as exc:
        raise await explain_failure(channel, exc) from exc
    if reply.status != HealthCheckResponse.SERVING:
        raise UnavailableError(f"{_address(channel)} is not serving (it may be shutting down)")


def connection_failure(channel: Channel, exc: BaseException) -> StamenError:
    """The error to raise for `exc`, a connection failure on `channel`, saying why."""
    where = _address(channel)
    tls = getattr(channel, "tls", None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConfigError(
            f"TLS: {where} presented a certificate this client does not trust "
            f"({exc.verify_message}): pass the CA that signed the SuperLink's certificate "
            "as --root-certificates, and connect with a name the certificate is for"
        )
    if isinstance(exc, ssl.SSLError):
        return ConfigError(
            f"TLS handshake with {where} failed ({exc.reason or exc}): the SuperLink "
            "probably serves without TLS; if it was started with --insecure, "
            "connect with --insecure"
        )
    if isinstance(exc, TimeoutError):
        return UnavailableError(f"{where} did not answer in time")
    if isinstance(exc, ConnectionRefusedError):
        return UnavailableError(f"cannot reach {where}: connection refused (is it running?)")
    if tls is True and isinstance(exc, ConnectionResetError | StreamTerminatedError):
        return UnavailableError(
            f"{where} closed the connection during TLS setup: the SuperLink may serve "
            "without TLS (--insecure), or it went away"
        )
    return UnavailableError(f"cannot reach {where}: {exc or type(exc).__name__}")


async def explain_failure(channel: Channel, exc: BaseException) -> StamenError:
    """Like `connection_failure`, but when a plaintext client's connection is dropped,
    find out whether the server speaks TLS: that mistake is a ConfigError, said at once,
    while a server that merely went away is an UnavailableError worth retrying."""
    endpoint = getattr(channel, "endpoint", None)
    if (
        endpoint is not None
        and getattr(channel, "tls", None) is False
        and isinstance(exc, StreamTerminatedError | ConnectionResetError)
    ):
        where = _address(channel)
        if await _speaks_tls(*endpoint):
            return ConfigError(
                f"{where} requires TLS: connect with --root-certificates CA instead of --insecure"
            )
        return UnavailableError(f"{where} closed the connection (it may have gone away)")
    return connection_failure(channel, exc)


async def _speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TLS handshake with host:port succeeds (certificate unchecked: this only
    asks which protocol the server speaks)."""
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=probe)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


_CLIENTS = {
    "Fleet": "SuperNodes connect to the Fleet API (port 9092 by default)",
    "ServerAppIo": "ServerApp runners connect to the ServerAppIo API (port 9091 by default)",
    "Control": "the stamen CLI connects to the Control API (port 9093 by default)",
}


def is_wrong_api(exc: GRPCError) -> bool:
    """Whether `exc` says the server does not serve the API that was called: another of
    the SuperLink's ports, or not a gRPC server of ours at all."""
    return exc.status == Status.UNIMPLEMENTED or "content-type" in (exc.message or "")


async def wrong_api(channel: Channel, api: str) -> ConfigError:
    """The error for calling `api` at an address that serves something else, naming what
    it serves when it is one of the SuperLink's APIs (asked through its health service)."""
    where = _address(channel)
    for other in _CLIENTS:
        if other == api:
            continue
        try:
            async with asyncio.timeout(3.0):
                reply = await HealthStub(channel).Check(
                    HealthCheckRequest(service=f"stamen.v1.{other}")
                )
        except (GRPCError, TimeoutError, *CONNECTION_ERRORS):
            continue
        if reply.status == HealthCheckResponse.SERVING:
            return ConfigError(f"{where} is the {other} API; {_CLIENTS[api]}")
    return ConfigError(f"{where} does not serve the {api} API; {_CLIENTS[api]}")


def _address(channel: Channel) -> str:
    return str(getattr(channel, "address", "the SuperLink"))
