"""A run: one ServerApp driving its ClientApps through the SuperLink, and its lifecycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .records import UserConfig

__all__ = ["Run", "RunStatus"]


class RunStatus(StrEnum):
    """A run's lifecycle: pending -> running -> finished (completed | failed | stopped).

    Each is the string it stands for, as stored (SQLite) and sent (protobuf): `status`
    takes one of the first three, `sub_status` one of the last three once finished.
    """

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
    status: RunStatus = RunStatus.PENDING
    sub_status: str = ""
    details: str = ""
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    bundle: str = ""
    """sha256 of the run's app bundle; "" for a run created without one (by hand)."""
