"""Domain objects that cross the three APIs, besides Envelope (see stamen.codec)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stamen.common.records import UserConfig

__all__ = [
    "CHECKPOINT_PREFIX",
    "LogChunk",
    "Node",
    "NodeRegistration",
    "PushResult",
    "ResultFile",
    "Run",
    "RunStatus",
]

CHECKPOINT_PREFIX = "checkpoint-"
"""A run checkpoint's message id starts with this (ServerAppIo.PushCheckpoint)."""


class RunStatus:
    """A run's lifecycle: pending -> running -> finished (completed | failed | stopped)."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Run:
    run_id: int
    server_app: str = ""
    client_app: str = ""
    run_config: UserConfig = field(default_factory=dict)
    status: str = RunStatus.PENDING
    sub_status: str = ""
    details: str = ""
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    bundle: str = ""
    """sha256 of the run's app bundle; "" for a run created without one (by hand)."""


@dataclass(frozen=True, slots=True)
class LogChunk:
    """A piece of a run's log, from where the caller was, and the run as it is now."""

    text: bytes
    next_offset: int
    run: Run


@dataclass(frozen=True, slots=True)
class ResultFile:
    """A file a run left in the SuperLink (history.json, final_arrays.npz, ...)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    node_config: UserConfig = field(default_factory=dict)
    online: bool = True
    last_heartbeat: float = 0.0
    registered_at: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeRegistration:
    node_id: int
    heartbeat_interval: float
    token: str = ""
    """What proves this registration on later calls over gRPC ("" in memory)."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push stored: the message ids, and the objects the store still lacks."""

    message_ids: tuple[str, ...]
    missing_object_ids: tuple[str, ...] = ()
