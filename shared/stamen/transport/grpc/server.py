"""grpclib servers for the SuperLink's APIs: listening sockets, health, the message cap.

The caller binds the socket (`listen`) so that port 0 works and the bound address is
known before anything is served; `api_server` builds the grpclib `Server` for one API
servicer, with the standard gRPC health service reporting its drain's state.
"""

from __future__ import annotations

import socket

from grpclib.health.service import Health
from grpclib.server import Server

from stamen.common.config import split_address
from stamen.common.errors import ConfigError
from stamen.common.heap import keep_chunk_buffers

from . import h2patch
from .errors import FailureCodec
from .limits import BoundedProtoCodec
from .servicers import ControlServicer, FleetServicer, ServerAppIoServicer, _Servicer

__all__ = ["api_server", "listen", "socket_address"]


def api_server(
    servicer: FleetServicer | ServerAppIoServicer | ControlServicer, *more: _Servicer
) -> Server:
    """A `Server` (not started) for `servicer` (and `more` services on the same port),
    plus a health service that reports its drain's state (call inside the event loop)."""
    h2patch.install()
    keep_chunk_buffers()  # object streams reuse their ~1 MiB buffers
    health = Health({servicer: [servicer.drain.health]})
    return Server(
        [servicer, *more, health], codec=BoundedProtoCodec(), status_details_codec=FailureCodec()
    )


def listen(address: str) -> socket.socket:
    """A listening TCP socket on `address` (`HOST:PORT`, port 0 = any free port)."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from exc


def socket_address(sock: socket.socket) -> str:
    """The `HOST:PORT` a listening socket is bound to."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
