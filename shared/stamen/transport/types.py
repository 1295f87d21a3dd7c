"""Objects only the three APIs carry; Run, Node and PushResult live in stamen.common."""

from __future__ import annotations

from dataclasses import dataclass

from stamen.common.run import Run

__all__ = [
    "CHECKPOINT_PREFIX",
    "LogChunk",
    "NodeRegistration",
    "ResultFile",
]

CHECKPOINT_PREFIX = "checkpoint-"
"""A run checkpoint's message id starts with this (ServerAppIo.PushCheckpoint)."""


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
class NodeRegistration:
    node_id: int
    heartbeat_interval: float
    token: str = ""
    """What proves this registration on later calls over gRPC ("" in memory)."""
