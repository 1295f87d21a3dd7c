"""gRPC servicers that serve any implementation of the three API protocols.

Each servicer converts protocol messages to domain objects (`stamen.codec.proto`), calls
the API object it wraps, and converts back; betterproto types stop here. Every call runs
inside the server's `Drain` (graceful shutdown) and `grpc_errors` (the one error table).
Object streams: PushObject's first chunk names the object, its size and the pushing node
or run, and the handler receives the data of all chunks, checked to arrive in order;
PullObject sends the handler's chunks with their offsets, the object id on the first
(`total_size` 0: the size is the sum of the chunks, checked against the hash by the reader).

Who calls: each servicer's methods run behind an `Authority` (`guard`). Fleet takes the
node's identity from the registration token (`FleetAuthority`), never from a request's
`node_id` field: that field may be 0, and naming another node is PERMISSION_DENIED. The
operator APIs take an optional authority (None: open, for in-process use and tests).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager

from grpclib.const import Handler

from stamen.auth.authority import Authority, FleetAuthority
from stamen.auth.tokens import NodeTokens
from stamen.codec.objects import Buffer
from stamen.codec.proto import (
    envelope_from_proto,
    envelope_to_wire,
    node_to_proto,
    run_to_proto,
    user_config_from_proto,
)
from stamen.common.errors import (
    IntegrityError,
    InvalidMessageError,
    PermissionDeniedError,
    RunNotFoundError,
    UnauthenticatedError,
)
from stamen.common.push import PushResult
from stamen.proto.stamen import v1 as pb
from stamen.transport.api import ControlApi, FleetApi, ServerAppIoApi
from stamen.transport.streams import aclose

from .drain import Drain
from .errors import grpc_errors
from .guard import current_caller, guard

__all__ = ["ControlServicer", "FleetServicer", "ServerAppIoServicer"]


class _Servicer:
    _service: str
    _encoded: tuple[str, ...] = ()
    """Methods that answer `pb.EncodedMessages`: PullMessagesResponse's bytes, made from
    the stored envelopes without decoding them (`envelope_to_wire`)."""

    def __init__(self, drain: Drain | None, authority: Authority | None = None) -> None:
        self.drain = Drain() if drain is None else drain
        self.authority = authority

    def __mapping__(self) -> dict[str, Handler]:
        mapping = guard(super().__mapping__(), self.authority, self._service)  # type: ignore[misc]
        for method in self._encoded:
            name = f"/stamen.v1.{self._service}/{method}"
            mapping[name] = mapping[name]._replace(reply_type=pb.EncodedMessages)
        return mapping

    @asynccontextmanager
    async def _serving(self, method: str) -> AsyncIterator[None]:
        with grpc_errors(f"{self._service}.{method}"):
            async with self.drain.call():
                yield


class FleetServicer(_Servicer, pb.FleetBase):
    """The Fleet API (what SuperNodes call) over gRPC."""

    _service = "Fleet"
    _encoded = ("PullMessages",)

    def __init__(
        self, api: FleetApi, drain: Drain | None = None, authority: FleetAuthority | None = None
    ) -> None:
        if authority is None:  # tokens under a secret that lives as long as this servicer
            authority = FleetAuthority(NodeTokens(secrets.token_bytes(32)))
        super().__init__(drain, authority)
        self._fleet_authority = authority
        self._api = api

    def _node(self, claimed: int) -> int:
        """The calling node's id, from its credentials; `claimed` (a request's node_id
        field) must be 0 or the same."""
        node_id = current_caller().node_id
        if node_id is None:
            raise UnauthenticatedError(f"{self._service}: the request names no registered node")
        if claimed and claimed != node_id:
            raise PermissionDeniedError(f"node {node_id} cannot act as node {claimed}")
        return node_id

    async def register_node(self, message: pb.RegisterNodeRequest) -> pb.RegisterNodeResponse:
        async with self._serving("RegisterNode"):
            registration = await self._api.register_node(
                user_config_from_proto(message.node_config)
            )
            token = self._fleet_authority.issue(current_caller(), registration.node_id)
        return pb.RegisterNodeResponse(
            node_id=registration.node_id,
            heartbeat_interval=registration.heartbeat_interval,
            token=token,
        )

    async def unregister_node(self, message: pb.UnregisterNodeRequest) -> pb.UnregisterNodeResponse:
        async with self._serving("UnregisterNode"):
            await self._api.unregister_node(self._node(message.node_id))
        return pb.UnregisterNodeResponse()

    async def heartbeat(self, message: pb.HeartbeatRequest) -> pb.HeartbeatResponse:
        async with self._serving("Heartbeat"):
            interval = await self._api.heartbeat(self._node(message.node_id))
        return pb.HeartbeatResponse(heartbeat_interval=interval)

    async def pull_messages(  # type: ignore[override]  # (the same bytes: `_encoded`)
        self, message: pb.PullMessagesRequest
    ) -> pb.EncodedMessages:
        async with self._serving("PullMessages"):
            poll = self._api.pull_messages(self._node(message.node_id), message.timeout)
            envelopes = await self.drain.long_poll(poll, [])
            return pb.EncodedMessages(messages=[envelope_to_wire(e) for e in envelopes])

    async def push_messages(self, message: pb.PushMessagesRequest) -> pb.PushMessagesResponse:
        async with self._serving("PushMessages"):
            envelopes = [envelope_from_proto(m) for m in message.messages]
            result = await self._api.push_messages(self._node(message.node_id), envelopes)
        return _push_response(result)

    async def push_object(self, messages: AsyncIterator[pb.ObjectChunk]) -> pb.PushObjectResponse:
        async with self._serving("PushObject"):
            first = await _first_chunk(messages)
            stored = await self._api.push_object(
                self._node(first.node_id),
                first.object_id,
                first.total_size,
                _chunk_data(first, messages),
            )
            async for _ in messages:  # what the handler did not need (it had the object)
                pass
        return pb.PushObjectResponse(object_id=first.object_id, stored=stored)

    async def pull_object(self, message: pb.PullObjectRequest) -> AsyncIterator[pb.ObjectChunk]:
        async with self._serving("PullObject"):
            chunks = self._api.pull_object(self._node(message.node_id), message.object_id)
            async with aclosing(_object_chunks(message.object_id, chunks)) as stream:
                async for chunk in stream:
                    yield chunk

    async def get_run(self, message: pb.GetRunRequest) -> pb.GetRunResponse:
        async with self._serving("GetRun"):
            run = await self._api.get_run(self._node(message.node_id), _run_id(message.run_id))
            return pb.GetRunResponse(run=run_to_proto(run))


class ServerAppIoServicer(_Servicer, pb.ServerAppIoBase):
    """The ServerAppIo API (what ServerApp runners call) over gRPC."""

    _service = "ServerAppIo"
    _encoded = ("PullMessages", "PullCheckpoint")

    def __init__(
        self, api: ServerAppIoApi, drain: Drain | None = None, authority: Authority | None = None
    ) -> None:
        super().__init__(drain, authority)
        self._api = api

    async def create_run(self, message: pb.CreateRunRequest) -> pb.CreateRunResponse:
        async with self._serving("CreateRun"):
            if not message.server_app:
                raise InvalidMessageError(
                    "CreateRun names no server_app (the ServerApp's module:attribute)"
                )
            run_id = await self._api.create_run(
                message.server_app, message.client_app, user_config_from_proto(message.run_config)
            )
        return pb.CreateRunResponse(run_id=run_id)

    async def get_run(self, message: pb.GetRunRequest) -> pb.GetRunResponse:
        async with self._serving("GetRun"):
            run = await self._api.get_run(_run_id(message.run_id))
            return pb.GetRunResponse(run=run_to_proto(run))

    async def get_nodes(self, message: pb.GetNodesRequest) -> pb.GetNodesResponse:
        async with self._serving("GetNodes"):
            nodes = await self._api.get_nodes(_run_id(message.run_id))
            return pb.GetNodesResponse(nodes=[node_to_proto(node) for node in nodes])

    async def push_messages(self, message: pb.PushInstructionsRequest) -> pb.PushMessagesResponse:
        async with self._serving("PushMessages"):
            envelopes = [envelope_from_proto(m) for m in message.messages]
            result = await self._api.push_messages(_run_id(message.run_id), envelopes)
        return _push_response(result)

    async def pull_messages(  # type: ignore[override]  # (the same bytes: `_encoded`)
        self, message: pb.PullRepliesRequest
    ) -> pb.EncodedMessages:
        async with self._serving("PullMessages"):
            poll = self._api.pull_messages(
                _run_id(message.run_id), message.message_ids, message.timeout
            )
            envelopes = await self.drain.long_poll(poll, [])
            return pb.EncodedMessages(messages=[envelope_to_wire(e) for e in envelopes])

    async def push_object(self, messages: AsyncIterator[pb.ObjectChunk]) -> pb.PushObjectResponse:
        async with self._serving("PushObject"):
            first = await _first_chunk(messages)
            stored = await self._api.push_object(
                _run_id(first.run_id),
                first.object_id,
                first.total_size,
                _chunk_data(first, messages),
            )
            async for _ in messages:  # what the handler did not need (it had the object)
                pass
        return pb.PushObjectResponse(object_id=first.object_id, stored=stored)

    async def pull_object(self, message: pb.PullObjectRequest) -> AsyncIterator[pb.ObjectChunk]:
        async with self._serving("PullObject"):
            chunks = self._api.pull_object(_run_id(message.run_id), message.object_id)
            async with aclosing(_object_chunks(message.object_id, chunks)) as stream:
                async for chunk in stream:
                    yield chunk

    async def update_run_status(
        self, message: pb.UpdateRunStatusRequest
    ) -> pb.UpdateRunStatusResponse:
        async with self._serving("UpdateRunStatus"):
            await self._api.update_run_status(
                _run_id(message.run_id), message.status, message.sub_status, message.details
            )
        return pb.UpdateRunStatusResponse()

    async def renew_run_lease(self, message: pb.RenewRunLeaseRequest) -> pb.RenewRunLeaseResponse:
        async with self._serving("RenewRunLease"):
            seconds = await self._api.renew_run_lease(_run_id(message.run_id), message.holder)
        return pb.RenewRunLeaseResponse(lease_seconds=seconds)

    async def push_checkpoint(self, message: pb.PushInstructionsRequest) -> pb.PushMessagesResponse:
        async with self._serving("PushCheckpoint"):
            if len(message.messages) != 1:
                raise InvalidMessageError("PushCheckpoint takes exactly one message")
            envelope = envelope_from_proto(message.messages[0])
            result = await self._api.push_checkpoint(_run_id(message.run_id), envelope)
        return _push_response(result)

    async def pull_checkpoint(  # type: ignore[override]  # (the same bytes: `_encoded`)
        self, message: pb.PullCheckpointRequest
    ) -> pb.EncodedMessages:
        async with self._serving("PullCheckpoint"):
            envelopes = await self._api.pull_checkpoint(_run_id(message.run_id))
            return pb.EncodedMessages(messages=[envelope_to_wire(e) for e in envelopes])

    async def report_round(self, message: pb.ReportRoundRequest) -> pb.ReportRoundResponse:
        async with self._serving("ReportRound"):
            await self._api.report_round(
                _run_id(message.run_id),
                message.server_round,
                message.seconds,
                {metric.name: metric.value for metric in message.metrics},
            )
        return pb.ReportRoundResponse()


class ControlServicer(_Servicer, pb.ControlBase):
    """The Control API (what operators' tools call) over gRPC."""

    _service = "Control"

    def __init__(
        self, api: ControlApi, drain: Drain | None = None, authority: Authority | None = None
    ) -> None:
        super().__init__(drain, authority)
        self._api = api

    async def list_runs(self, message: pb.ListRunsRequest) -> pb.ListRunsResponse:
        async with self._serving("ListRuns"):
            runs = await self._api.list_runs()
            return pb.ListRunsResponse(runs=[run_to_proto(run) for run in runs])

    async def get_run(self, message: pb.GetRunRequest) -> pb.GetRunResponse:
        async with self._serving("GetRun"):
            run = await self._api.get_run(_run_id(message.run_id))
            return pb.GetRunResponse(run=run_to_proto(run))

    async def stop_run(self, message: pb.StopRunRequest) -> pb.GetRunResponse:
        async with self._serving("StopRun"):
            run = await self._api.stop_run(_run_id(message.run_id))
            return pb.GetRunResponse(run=run_to_proto(run))

    async def push_bundle(self, messages: AsyncIterator[pb.ObjectChunk]) -> pb.PushObjectResponse:
        async with self._serving("PushBundle"):
            first = await _first_chunk(messages)
            stored = await self._api.push_bundle(
                first.object_id, first.total_size, _chunk_data(first, messages)
            )
            async for _ in messages:  # what the handler did not need (it had the bundle)
                pass
        return pb.PushObjectResponse(object_id=first.object_id, stored=stored)

    async def submit_run(self, message: pb.SubmitRunRequest) -> pb.GetRunResponse:
        async with self._serving("SubmitRun"):
            run_config = user_config_from_proto(message.run_config)
            run = await self._api.submit_run(message.bundle, run_config)
            return pb.GetRunResponse(run=run_to_proto(run))

    async def get_logs(self, message: pb.GetLogsRequest) -> pb.GetLogsResponse:
        async with self._serving("GetLogs"):
            chunk = await self._api.get_logs(
                _run_id(message.run_id), message.offset, message.timeout
            )
            return pb.GetLogsResponse(
                text=chunk.text, next_offset=chunk.next_offset, run=run_to_proto(chunk.run)
            )

    async def list_results(self, message: pb.ListResultsRequest) -> pb.ListResultsResponse:
        async with self._serving("ListResults"):
            files = await self._api.list_results(_run_id(message.run_id))
            return pb.ListResultsResponse(
                files=[pb.ResultFile(name=f.name, size=f.size, sha256=f.sha256) for f in files]
            )

    async def pull_result(self, message: pb.PullResultRequest) -> AsyncIterator[pb.ObjectChunk]:
        async with self._serving("PullResult"):
            files = {f.name: f for f in await self._api.list_results(_run_id(message.run_id))}
            sha256 = files[message.name].sha256 if message.name in files else ""
            chunks = self._api.pull_result(_run_id(message.run_id), message.name)
            async with aclosing(_object_chunks(sha256, chunks)) as stream:
                async for chunk in stream:
                    yield chunk


_MAX_ID = (1 << 63) - 1


def _run_id(run_id: int) -> int:
    """A run id from the wire (uint64): ids are 63-bit, so a larger one names no run."""
    if run_id > _MAX_ID:
        raise RunNotFoundError(run_id)
    return run_id


def _push_response(result: PushResult) -> pb.PushMessagesResponse:
    return pb.PushMessagesResponse(
        message_ids=list(result.message_ids), missing_object_ids=list(result.missing_object_ids)
    )


async def _first_chunk(messages: AsyncIterator[pb.ObjectChunk]) -> pb.ObjectChunk:
    first = await anext(messages, None)
    if first is None:
        raise InvalidMessageError("PushObject carried no chunk")
    if not first.object_id:
        raise InvalidMessageError("the first chunk of a PushObject stream names no object")
    return first


async def _chunk_data(
    first: pb.ObjectChunk, rest: AsyncIterator[pb.ObjectChunk]
) -> AsyncIterator[bytes]:
    """The data of a pushed object's chunks, checked to arrive in order."""
    received = 0
    chunk = first
    while True:
        if chunk.offset != received:
            raise IntegrityError(
                f"object {first.object_id}: chunk at offset {chunk.offset}, expected offset "
                f"{received} (chunks out of order or missing)"
            )
        received += len(chunk.data)
        yield chunk.data
        next_chunk = await anext(rest, None)
        if next_chunk is None:
            return
        chunk = next_chunk


async def _object_chunks(
    object_id: str, chunks: AsyncIterator[Buffer]
) -> AsyncGenerator[pb.ObjectChunk, None]:
    offset = 0
    try:
        async for data in chunks:
            yield pb.ObjectChunk(
                object_id=object_id if offset == 0 else "", offset=offset, data=bytes(data)
            )
            offset += len(data)
    finally:
        await aclose(chunks)
