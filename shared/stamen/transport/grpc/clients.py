"""The three API protocols implemented again over gRPC, on the caller's side.

`GrpcFleetClient(channel)` is a `FleetApi` like the SuperLink's own handler: the SuperNode
agent and the ServerApp's Grid take either. Every call has a deadline (`timeout`, plus
the long-poll bound for pulls, `stream_timeout` for object streams); a status comes back
as the error class the one table names (`errors.from_grpc`), a connection failure as the
`UnavailableError` or `ConfigError` that `channel.explain_failure` words.

The Fleet client keeps the token each registration returned and sends it (metadata
`stamen-node-token`) with every call made as that node: the SuperLink knows a node by
its token, so a client cannot act as a node it did not register.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import cast

from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from grpclib.protocol import Connection

from stamen.auth.signing import NODE_TOKEN_HEADER
from stamen.codec.envelope import Envelope
from stamen.codec.proto import (
    envelope_from_proto,
    envelope_to_wire,
    node_from_proto,
    run_from_proto,
    user_config_to_proto,
)
from stamen.common.buffers import Buffer
from stamen.common.errors import InvalidMessageError, UnavailableError
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run
from stamen.proto.stamen import v1 as pb
from stamen.transport.streams import aclose
from stamen.transport.types import LogChunk, NodeRegistration, ResultFile

from .channel import CONNECTION_ERRORS, explain_failure, is_wrong_api, wrong_api
from .errors import from_grpc

__all__ = [
    "DEFAULT_STREAM_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "GrpcControlClient",
    "GrpcFleetClient",
    "GrpcServerAppIoClient",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a unary call may take (a long-poll gets its own bound on top)."""

DEFAULT_STREAM_TIMEOUT = 600.0
"""Seconds an object stream may take: 2 GB at a slow 4 MB/s."""


_PushObject = Callable[..., Awaitable[pb.PushObjectResponse]]
_PullObject = Callable[..., AsyncIterator[pb.ObjectChunk]]


class _Client:
    _api = ""
    """The API the client calls (Fleet, ServerAppIo, Control), named in errors."""

    def __init__(
        self,
        channel: Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
    ) -> None:
        self.channel = channel
        self.timeout = timeout
        self.stream_timeout = stream_timeout

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        try:
            yield
        except GRPCError as exc:
            if is_wrong_api(exc):
                raise await wrong_api(self.channel, self._api) from exc
            raise from_grpc(exc) from exc
        except CONNECTION_ERRORS as exc:
            raise await explain_failure(self.channel, exc) from exc
        except AttributeError as exc:
            if not _closed_under_us(exc):
                raise
            raise UnavailableError(
                "the connection to the SuperLink closed as a request began"
            ) from exc

    async def _push_object(
        self,
        push: _PushObject,
        first: pb.ObjectChunk,
        chunks: AsyncIterable[Buffer],
        metadata: dict[str, str] | None = None,
    ) -> bool:
        """Stream `chunks`; `first` (naming the object and its sender) carries the first."""

        async def requests() -> AsyncIterator[pb.ObjectChunk]:
            offset = 0
            async for data in chunks:
                if offset == 0:
                    first.data = bytes(data)
                    yield first
                else:
                    yield pb.ObjectChunk(offset=offset, data=bytes(data))
                offset += len(data)
            if offset == 0:  # no data: the stream still names the object
                yield first

        async with self._call():
            reply = await push(requests(), timeout=self.stream_timeout, metadata=metadata)
        return reply.stored

    async def _pull_object(
        self,
        pull: _PullObject,
        request: pb.PullObjectRequest,
        metadata: dict[str, str] | None = None,
    ) -> AsyncIterator[Buffer]:
        stream = pull(request, timeout=self.stream_timeout, metadata=metadata)
        received = 0
        try:
            async with self._call():
                async for chunk in stream:
                    if chunk.offset != received or (
                        received == 0 and chunk.object_id != request.object_id
                    ):
                        raise InvalidMessageError(
                            f"object {request.object_id}: unexpected chunk "
                            f"(object {chunk.object_id!r}, offset {chunk.offset})"
                        )
                    received += len(chunk.data)
                    yield chunk.data
        finally:
            await aclose(stream)


class GrpcFleetClient(_Client):
    """`FleetApi` over a channel to the SuperLink's Fleet API."""

    _api = "Fleet"

    def __init__(
        self,
        channel: Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
    ) -> None:
        super().__init__(channel, timeout=timeout, stream_timeout=stream_timeout)
        self._stub = pb.FleetStub(channel)
        self._tokens: dict[int, str] = {}

    def _as(self, node_id: int) -> dict[str, str]:
        """The metadata that makes a call come from `node_id` (none for a node this
        client did not register: the SuperLink then refuses the call)."""
        token = self._tokens.get(node_id)
        return {} if token is None else {NODE_TOKEN_HEADER: token}

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        request = pb.RegisterNodeRequest(node_config=user_config_to_proto(node_config))
        async with self._call():
            reply = await self._stub.register_node(request, timeout=self.timeout)
        self._tokens[reply.node_id] = reply.token
        return NodeRegistration(reply.node_id, reply.heartbeat_interval, reply.token)

    async def unregister_node(self, node_id: int) -> None:
        async with self._call():
            await self._stub.unregister_node(
                pb.UnregisterNodeRequest(node_id=node_id),
                timeout=self.timeout,
                metadata=self._as(node_id),
            )

    async def heartbeat(self, node_id: int) -> float:
        async with self._call():
            reply = await self._stub.heartbeat(
                pb.HeartbeatRequest(node_id=node_id),
                timeout=self.timeout,
                metadata=self._as(node_id),
            )
        return reply.heartbeat_interval

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        request = pb.PullMessagesRequest(node_id=node_id, timeout=timeout)
        async with self._call():
            reply = await self._stub.pull_messages(
                request, timeout=timeout + self.timeout, metadata=self._as(node_id)
            )
            return [envelope_from_proto(message) for message in reply.messages]

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        request = _encoded_push(node_id, envelopes)
        async with self._call():
            reply = await self._stub.push_messages(
                cast(pb.PushMessagesRequest, request),  # the same bytes: `_encoded_push`
                timeout=self.timeout,
                metadata=self._as(node_id),
            )
        return _push_result(reply)

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        first = pb.ObjectChunk(object_id=object_id, total_size=total_size, node_id=node_id)
        return await self._push_object(
            self._stub.push_object, first, chunks, metadata=self._as(node_id)
        )

    def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Buffer]:
        request = pb.PullObjectRequest(object_id=object_id, node_id=node_id)
        return self._pull_object(self._stub.pull_object, request, metadata=self._as(node_id))

    async def get_run(self, node_id: int, run_id: int) -> Run:
        async with self._call():
            reply = await self._stub.get_run(
                pb.GetRunRequest(node_id=node_id, run_id=run_id),
                timeout=self.timeout,
                metadata=self._as(node_id),
            )
            return _run(reply)


class GrpcServerAppIoClient(_Client):
    """`ServerAppIoApi` over a channel to the SuperLink's ServerAppIo API."""

    _api = "ServerAppIo"

    def __init__(
        self,
        channel: Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
    ) -> None:
        super().__init__(channel, timeout=timeout, stream_timeout=stream_timeout)
        self._stub = pb.ServerAppIoStub(channel)

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        request = pb.CreateRunRequest(
            server_app=server_app,
            client_app=client_app,
            run_config=user_config_to_proto(run_config),
        )
        async with self._call():
            reply = await self._stub.create_run(request, timeout=self.timeout)
        return reply.run_id

    async def get_run(self, run_id: int) -> Run:
        async with self._call():
            reply = await self._stub.get_run(pb.GetRunRequest(run_id=run_id), timeout=self.timeout)
            return _run(reply)

    async def get_nodes(self, run_id: int) -> list[Node]:
        async with self._call():
            reply = await self._stub.get_nodes(
                pb.GetNodesRequest(run_id=run_id), timeout=self.timeout
            )
            return [node_from_proto(node) for node in reply.nodes]

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        request = _encoded_push(run_id, envelopes)
        async with self._call():
            reply = await self._stub.push_messages(
                cast(pb.PushInstructionsRequest, request),  # the same bytes: `_encoded_push`
                timeout=self.timeout,
            )
        return _push_result(reply)

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        request = pb.PullRepliesRequest(
            run_id=run_id, message_ids=list(message_ids), timeout=timeout
        )
        async with self._call():
            reply = await self._stub.pull_messages(request, timeout=timeout + self.timeout)
            return [envelope_from_proto(message) for message in reply.messages]

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        first = pb.ObjectChunk(object_id=object_id, total_size=total_size, run_id=run_id)
        return await self._push_object(self._stub.push_object, first, chunks)

    def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Buffer]:
        request = pb.PullObjectRequest(object_id=object_id, run_id=run_id)
        return self._pull_object(self._stub.pull_object, request)

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        request = pb.UpdateRunStatusRequest(
            run_id=run_id, status=status, sub_status=sub_status, details=details
        )
        async with self._call():
            await self._stub.update_run_status(request, timeout=self.timeout)

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        request = pb.RenewRunLeaseRequest(run_id=run_id, holder=holder)
        async with self._call():
            reply = await self._stub.renew_run_lease(request, timeout=self.timeout)
        return reply.lease_seconds

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        request = _encoded_push(run_id, [envelope])
        async with self._call():
            reply = await self._stub.push_checkpoint(
                cast(pb.PushInstructionsRequest, request),  # the same bytes: `_encoded_push`
                timeout=self.timeout,
            )
        return _push_result(reply)

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        request = pb.PullCheckpointRequest(run_id=run_id)
        async with self._call():
            reply = await self._stub.pull_checkpoint(request, timeout=self.timeout)
        return [envelope_from_proto(message) for message in reply.messages]

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        request = pb.ReportRoundRequest(
            run_id=run_id,
            server_round=server_round,
            seconds=seconds,
            metrics=[pb.RoundMetric(name=name, value=value) for name, value in metrics.items()],
        )
        async with self._call():
            await self._stub.report_round(request, timeout=self.timeout)


class GrpcControlClient(_Client):
    """`ControlApi` over a channel to the SuperLink's Control API."""

    _api = "Control"

    def __init__(self, channel: Channel, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(channel, timeout=timeout)
        self._stub = pb.ControlStub(channel)

    async def list_runs(self) -> list[Run]:
        async with self._call():
            reply = await self._stub.list_runs(pb.ListRunsRequest(), timeout=self.timeout)
            return [run_from_proto(run) for run in reply.runs]

    async def get_run(self, run_id: int) -> Run:
        async with self._call():
            reply = await self._stub.get_run(pb.GetRunRequest(run_id=run_id), timeout=self.timeout)
            return _run(reply)

    async def stop_run(self, run_id: int) -> Run:
        async with self._call():
            reply = await self._stub.stop_run(
                pb.StopRunRequest(run_id=run_id), timeout=self.timeout
            )
            return _run(reply)

    async def push_bundle(
        self, bundle: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        first = pb.ObjectChunk(object_id=bundle, total_size=total_size)
        return await self._push_object(self._stub.push_bundle, first, chunks)

    async def submit_run(self, bundle: str, run_config: UserConfig) -> Run:
        request = pb.SubmitRunRequest(bundle=bundle, run_config=user_config_to_proto(run_config))
        async with self._call():
            return _run(await self._stub.submit_run(request, timeout=self.stream_timeout))

    async def get_logs(self, run_id: int, offset: int, timeout: float) -> LogChunk:
        request = pb.GetLogsRequest(run_id=run_id, offset=offset, timeout=timeout)
        async with self._call():
            reply = await self._stub.get_logs(request, timeout=self.timeout + max(timeout, 0.0))
            if reply.run is None:
                raise InvalidMessageError("GetLogs answered without a run")
            return LogChunk(reply.text, reply.next_offset, run_from_proto(reply.run))

    async def list_results(self, run_id: int) -> list[ResultFile]:
        request = pb.ListResultsRequest(run_id=run_id)
        async with self._call():
            reply = await self._stub.list_results(request, timeout=self.timeout)
            return [ResultFile(f.name, f.size, f.sha256) for f in reply.files]

    async def pull_result(self, run_id: int, name: str) -> AsyncIterator[Buffer]:
        stream = self._stub.pull_result(
            pb.PullResultRequest(run_id=run_id, name=name), timeout=self.stream_timeout
        )
        received = 0
        try:
            async with self._call():
                async for chunk in stream:
                    if chunk.offset != received:
                        raise InvalidMessageError(
                            f"result {name!r}: chunk at offset {chunk.offset}, expected {received}"
                        )
                    received += len(chunk.data)
                    yield chunk.data
        finally:
            await aclose(stream)


def _encoded_push(sender: int, envelopes: Sequence[Envelope]) -> pb.EncodedPush:
    """PushMessagesRequest (node id) or PushInstructionsRequest (run id), byte for byte,
    made from the envelopes' payloads without decoding them (`envelope_to_wire`)."""
    return pb.EncodedPush(id=sender, messages=[envelope_to_wire(e) for e in envelopes])


def _push_result(reply: pb.PushMessagesResponse) -> PushResult:
    return PushResult(
        message_ids=tuple(reply.message_ids), missing_object_ids=tuple(reply.missing_object_ids)
    )


def _run(reply: pb.GetRunResponse) -> Run:
    if reply.run is None:
        raise InvalidMessageError("GetRun answered without a run")
    return run_from_proto(reply.run)


def _closed_under_us(exc: AttributeError) -> bool:
    """grpclib's race: a request that starts on a connection closing that instant finds
    the connection's transport gone (a dropped connection, not a bug of ours)."""
    return isinstance(exc.obj, Connection) and exc.name == "_transport"
