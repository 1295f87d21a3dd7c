"""The three SuperLink APIs over gRPC (grpclib): servicers, clients, channels, servers."""

from .channel import SuperLinkChannel, check_health, connect, connection_failure
from .clients import (
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    GrpcControlClient,
    GrpcFleetClient,
    GrpcServerAppIoClient,
)
from .drain import Drain
from .errors import FailureCodec, as_grpc, from_grpc, grpc_errors
from .limits import MAX_MESSAGE_SIZE, BoundedProtoCodec
from .nodekeys import GrpcNodeKeysClient, NodeKeysServicer
from .server import api_server, listen, socket_address
from .servicers import ControlServicer, FleetServicer, ServerAppIoServicer
from .tls import client_context, server_context

__all__ = [
    "DEFAULT_STREAM_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_MESSAGE_SIZE",
    "BoundedProtoCodec",
    "ControlServicer",
    "Drain",
    "FailureCodec",
    "FleetServicer",
    "GrpcControlClient",
    "GrpcFleetClient",
    "GrpcNodeKeysClient",
    "GrpcServerAppIoClient",
    "NodeKeysServicer",
    "ServerAppIoServicer",
    "SuperLinkChannel",
    "api_server",
    "as_grpc",
    "check_health",
    "client_context",
    "connect",
    "connection_failure",
    "from_grpc",
    "grpc_errors",
    "listen",
    "server_context",
    "socket_address",
]
