"""The memory transport: the SuperLink's handlers, called directly in the caller's loop.

Nothing is serialized and array bytes are never copied. The one thing the wrappers add is
what a caller could otherwise tell apart from gRPC: errors arrive as the classes and
messages the gRPC clients raise (`as_over_wire`), including errors met while an object
streams. The rest holds already: the SuperLink's state copies what it keeps and what it
returns, and its object store hands out read-only views (the contract suite checks both).
Like the gRPC Fleet client, a `MemoryFleet` acts only as the nodes it registered: a call
as any other node is refused as the SuperLink refuses one without that node's token.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence

from stamen.auth.tokens import NO_TOKEN
from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.errors import UnauthenticatedError
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run
from stamen.transport.api import ControlApi, FleetApi, ServerAppIoApi
from stamen.transport.errors import as_over_wire
from stamen.transport.streams import aclose
from stamen.transport.types import LogChunk, NodeRegistration, ResultFile

__all__ = ["MemoryControl", "MemoryFleet", "MemoryServerAppIo"]


class MemoryFleet:
    """`FleetApi` for a virtual SuperNode: the SuperLink's Fleet handler, called directly."""

    def __init__(self, handler: FleetApi) -> None:
        self._handler = handler
        self._registered: set[int] = set()

    def _as(self, node_id: int) -> int:
        if node_id not in self._registered:
            raise UnauthenticatedError(NO_TOKEN)
        return node_id

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        with as_over_wire("Fleet.RegisterNode"):
            registration = await self._handler.register_node(node_config)
        self._registered.add(registration.node_id)
        return registration

    async def unregister_node(self, node_id: int) -> None:
        with as_over_wire("Fleet.UnregisterNode"):
            await self._handler.unregister_node(self._as(node_id))

    async def heartbeat(self, node_id: int) -> float:
        with as_over_wire("Fleet.Heartbeat"):
            return await self._handler.heartbeat(self._as(node_id))

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        with as_over_wire("Fleet.PullMessages"):
            return await self._handler.pull_messages(self._as(node_id), timeout)

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        with as_over_wire("Fleet.PushMessages"):
            return await self._handler.push_messages(self._as(node_id), envelopes)

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        with as_over_wire("Fleet.PushObject"):
            return await self._handler.push_object(self._as(node_id), object_id, total_size, chunks)

    def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Buffer]:
        if node_id not in self._registered:
            return _refused("Fleet.PullObject")
        return _streamed("Fleet.PullObject", self._handler.pull_object(node_id, object_id))

    async def get_run(self, node_id: int, run_id: int) -> Run:
        with as_over_wire("Fleet.GetRun"):
            return await self._handler.get_run(self._as(node_id), run_id)


class MemoryServerAppIo:
    """`ServerAppIoApi` for an in-process ServerApp runner."""

    def __init__(self, handler: ServerAppIoApi) -> None:
        self._handler = handler

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        with as_over_wire("ServerAppIo.CreateRun"):
            return await self._handler.create_run(server_app, client_app, run_config)

    async def get_run(self, run_id: int) -> Run:
        with as_over_wire("ServerAppIo.GetRun"):
            return await self._handler.get_run(run_id)

    async def get_nodes(self, run_id: int) -> list[Node]:
        with as_over_wire("ServerAppIo.GetNodes"):
            return await self._handler.get_nodes(run_id)

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        with as_over_wire("ServerAppIo.PushMessages"):
            return await self._handler.push_messages(run_id, envelopes)

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        with as_over_wire("ServerAppIo.PullMessages"):
            return await self._handler.pull_messages(run_id, message_ids, timeout)

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        with as_over_wire("ServerAppIo.PushObject"):
            return await self._handler.push_object(run_id, object_id, total_size, chunks)

    def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Buffer]:
        return _streamed("ServerAppIo.PullObject", self._handler.pull_object(run_id, object_id))

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        with as_over_wire("ServerAppIo.UpdateRunStatus"):
            await self._handler.update_run_status(run_id, status, sub_status, details)

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        with as_over_wire("ServerAppIo.RenewRunLease"):
            return await self._handler.renew_run_lease(run_id, holder)

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        with as_over_wire("ServerAppIo.PushCheckpoint"):
            return await self._handler.push_checkpoint(run_id, envelope)

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        with as_over_wire("ServerAppIo.PullCheckpoint"):
            return await self._handler.pull_checkpoint(run_id)

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        with as_over_wire("ServerAppIo.ReportRound"):
            await self._handler.report_round(run_id, server_round, seconds, dict(metrics))


class MemoryControl:
    """`ControlApi` for in-process tools and tests."""

    def __init__(self, handler: ControlApi) -> None:
        self._handler = handler

    async def list_runs(self) -> list[Run]:
        with as_over_wire("Control.ListRuns"):
            return await self._handler.list_runs()

    async def get_run(self, run_id: int) -> Run:
        with as_over_wire("Control.GetRun"):
            return await self._handler.get_run(run_id)

    async def stop_run(self, run_id: int) -> Run:
        with as_over_wire("Control.StopRun"):
            return await self._handler.stop_run(run_id)

    async def push_bundle(
        self, bundle: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        with as_over_wire("Control.PushBundle"):
            return await self._handler.push_bundle(bundle, total_size, chunks)

    async def submit_run(self, bundle: str, run_config: UserConfig) -> Run:
        with as_over_wire("Control.SubmitRun"):
            return await self._handler.submit_run(bundle, dict(run_config))

    async def get_logs(self, run_id: int, offset: int, timeout: float) -> LogChunk:
        with as_over_wire("Control.GetLogs"):
            return await self._handler.get_logs(run_id, offset, timeout)

    async def list_results(self, run_id: int) -> list[ResultFile]:
        with as_over_wire("Control.ListResults"):
            return await self._handler.list_results(run_id)

    def pull_result(self, run_id: int, name: str) -> AsyncIterator[Buffer]:
        return _streamed("Control.PullResult", self._handler.pull_result(run_id, name))


async def _refused(method: str) -> AsyncIterator[Buffer]:
    with as_over_wire(method):
        raise UnauthenticatedError(NO_TOKEN)
    yield b""  # pragma: no cover - makes this an async generator


async def _streamed(method: str, chunks: AsyncIterator[Buffer]) -> AsyncIterator[Buffer]:
    try:
        with as_over_wire(method):
            async for chunk in chunks:
                yield chunk
    finally:
        await aclose(chunks)
