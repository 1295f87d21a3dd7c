"""Helpers for the SuperLink handler tests: envelopes, object streams, a linked setup."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from stamen.codec.envelope import Envelope
from stamen.codec.message import decode_message
from stamen.codec.objects import Buffer
from stamen.common.clock import FakeClock
from stamen.common.message import SUPERLINK_NODE_ID, Error, Metadata, new_message_id
from stamen.superlink import (
    FileObjectStore,
    MemoryLinkState,
    MemoryObjectStore,
    SqliteLinkState,
    SuperLink,
)

HEARTBEAT = 1.0


def make_link(kind: str, tmp_path: Path, clock: FakeClock) -> SuperLink:
    if kind == "memory":
        return SuperLink(
            MemoryLinkState(), MemoryObjectStore(), clock=clock, heartbeat_interval=HEARTBEAT
        )
    return SuperLink(
        SqliteLinkState(tmp_path / "state.db"),
        FileObjectStore(tmp_path / "state.db.objects"),
        clock=clock,
        heartbeat_interval=HEARTBEAT,
    )


def oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks(data: bytes) -> AsyncIterator[Buffer]:
    yield data


async def collect(stream: AsyncIterator[Buffer]) -> bytes:
    return b"".join([bytes(chunk) async for chunk in stream])


def instruction(
    run_id: int,
    dst: int,
    *,
    objects: Sequence[bytes] = (),
    ttl: float = 60.0,
    message_type: str = "train",
    message_id: str | None = None,
) -> Envelope:
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id or new_message_id(),
        src_node_id=SUPERLINK_NODE_ID,
        dst_node_id=dst,
        reply_to_message_id="",
        group_id="1",
        message_type=message_type,
        ttl=ttl,
        created_at=1.0,
    )
    return Envelope(metadata, b"instruction", tuple(oid(o) for o in objects))


def reply(ins: Envelope, *, objects: Sequence[bytes] = (), payload: bytes = b"reply") -> Envelope:
    md = ins.metadata
    metadata = Metadata(
        run_id=md.run_id,
        message_id=new_message_id(),
        src_node_id=md.dst_node_id,
        dst_node_id=md.src_node_id,
        reply_to_message_id=md.message_id,
        group_id=md.group_id,
        message_type=md.message_type,
        ttl=md.ttl,
        created_at=2.0,
    )
    return Envelope(metadata, payload, tuple(oid(o) for o in objects))


def error_of(envelope: Envelope) -> Error:
    return decode_message(envelope, {}).error


@dataclass
class Setup:
    link: SuperLink
    run_id: int
    node_id: int


async def running_setup(link: SuperLink) -> Setup:
    """A registered node and a running run."""
    registration = await link.fleet.register_node({"partition-id": 0})
    run_id = await link.serverappio.create_run("server:app", "client:app", {})
    await link.serverappio.update_run_status(run_id, "running")
    return Setup(link, run_id, registration.node_id)
