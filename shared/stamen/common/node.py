"""A node: a SuperNode as the SuperLink knows it (its config and liveness)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import UserConfig

__all__ = ["Node"]


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    node_config: UserConfig = field(default_factory=dict)
    online: bool = True
    last_heartbeat: float = 0.0
    registered_at: float = 0.0
