"""The NodeKeys API over gRPC: its servicer (on the SuperLink's Control port, behind the
operator authority) and its client (for the `stamen` CLI and other operator tools)."""

from __future__ import annotations

from grpclib.client import Channel

from stamen.auth.authority import Authority
from stamen.proto.stamen import v1 as pb
from stamen.transport.api import NodeKeysApi

from .clients import DEFAULT_TIMEOUT, _Client
from .drain import Drain
from .servicers import _Servicer

__all__ = ["GrpcNodeKeysClient", "NodeKeysServicer"]


class NodeKeysServicer(_Servicer, pb.NodeKeysBase):
    """Serves a `NodeKeysApi` (the SuperLink's key registry)."""

    _service = "NodeKeys"

    def __init__(
        self, api: NodeKeysApi, drain: Drain | None = None, authority: Authority | None = None
    ) -> None:
        super().__init__(drain, authority)
        self._api = api

    async def list_node_keys(self, message: pb.ListNodeKeysRequest) -> pb.NodeKeysResponse:
        async with self._serving("ListNodeKeys"):
            return pb.NodeKeysResponse(public_keys=await self._api.list_node_keys())

    async def add_node_key(self, message: pb.NodeKeyRequest) -> pb.NodeKeysResponse:
        async with self._serving("AddNodeKey"):
            return pb.NodeKeysResponse(public_keys=await self._api.add_node_key(message.public_key))

    async def remove_node_key(self, message: pb.NodeKeyRequest) -> pb.NodeKeysResponse:
        async with self._serving("RemoveNodeKey"):
            keys = await self._api.remove_node_key(message.public_key)
            return pb.NodeKeysResponse(public_keys=keys)


class GrpcNodeKeysClient(_Client):
    """`NodeKeysApi` over a channel to the SuperLink's Control port (send an operator
    token on it: `guard.use_operator_token`)."""

    def __init__(self, channel: Channel, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(channel, timeout=timeout)
        self._stub = pb.NodeKeysStub(channel)

    async def list_node_keys(self) -> list[str]:
        async with self._call():
            reply = await self._stub.list_node_keys(pb.ListNodeKeysRequest(), timeout=self.timeout)
        return list(reply.public_keys)

    async def add_node_key(self, public_key: str) -> list[str]:
        async with self._call():
            reply = await self._stub.add_node_key(
                pb.NodeKeyRequest(public_key=public_key), timeout=self.timeout
            )
        return list(reply.public_keys)

    async def remove_node_key(self, public_key: str) -> list[str]:
        async with self._call():
            reply = await self._stub.remove_node_key(
                pb.NodeKeyRequest(public_key=public_key), timeout=self.timeout
            )
        return list(reply.public_keys)
