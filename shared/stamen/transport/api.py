"""The three SuperLink APIs as typed async interfaces.

The SuperLink's handlers implement them; `stamen.transport.grpc` serves them over gRPC
and provides clients that implement them again on the other side; `stamen.transport.memory`
hands callers the handlers themselves. The SuperNode agent and the ServerApp's Grid are
written against these protocols and never know which transport carries them.

Object streams: `push_object` consumes chunks (any bytes-like, in order, summing to
`total_size`) and returns whether the store kept them (False: it already had the object);
`pull_object` yields the object's bytes in chunks of about 1 MiB.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Protocol

from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run

from .types import LogChunk, NodeRegistration, ResultFile

__all__ = ["ControlApi", "FleetApi", "NodeKeysApi", "ServerAppIoApi"]


class FleetApi(Protocol):
    """What a SuperNode calls (port 9092)."""

    async def register_node(self, node_config: UserConfig) -> NodeRegistration: ...

    async def unregister_node(self, node_id: int) -> None: ...

    async def heartbeat(self, node_id: int) -> float:
        """Record that the node is alive; returns the heartbeat interval to keep."""
        ...

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]: ...

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult: ...

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool: ...

    def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Buffer]: ...

    async def get_run(self, node_id: int, run_id: int) -> Run: ...


class ServerAppIoApi(Protocol):
    """What a ServerApp runner calls (port 9091)."""

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int: ...

    async def get_run(self, run_id: int) -> Run: ...

    async def get_nodes(self, run_id: int) -> list[Node]: ...

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult: ...

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]: ...

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool: ...

    def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Buffer]: ...

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None: ...

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        """Take or keep the run's lease for runner `holder`; the seconds it lasts."""
        ...

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        """Keep `envelope` as the run's checkpoint; push its missing objects after."""
        ...

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        """The run's latest checkpoint ([] when it has none)."""

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        """A round of the running run ended (`seconds`: its duration, 0 if unknown)."""
        ...


class ControlApi(Protocol):
    """What an operator's tools call (port 9093)."""

    async def list_runs(self) -> list[Run]: ...

    async def get_run(self, run_id: int) -> Run: ...

    async def stop_run(self, run_id: int) -> Run: ...

    async def push_bundle(
        self, bundle: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        """Store the app bundle whose sha256 is `bundle`, sent in `chunks` (any number,
        up to the SuperLink's --max-bundle-size in all); False when it was there already."""
        ...

    async def submit_run(self, bundle: str, run_config: UserConfig) -> Run:
        """Start a run of the pushed bundle `bundle` (its sha256): the SuperLink launches
        its ServerApp."""
        ...

    async def get_logs(self, run_id: int, offset: int, timeout: float) -> LogChunk:
        """The run's log from `offset`, waiting up to `timeout` for more while it runs."""
        ...

    async def list_results(self, run_id: int) -> list[ResultFile]: ...

    def pull_result(self, run_id: int, name: str) -> AsyncIterator[Buffer]: ...


class NodeKeysApi(Protocol):
    """What operators call to enroll and revoke SuperNode keys (on the Control port).

    Keys are OpenSSH public key lines; each call returns the list now in force.
    """

    async def list_node_keys(self) -> list[str]: ...

    async def add_node_key(self, public_key: str) -> list[str]: ...

    async def remove_node_key(self, public_key: str) -> list[str]: ...
