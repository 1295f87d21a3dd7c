"""Context: what an app knows about where it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import RecordDict, UserConfig

__all__ = ["Context"]


@dataclass(slots=True)
class Context:
    """What an app knows about where it runs; `state` persists across a run's rounds."""

    run_id: int
    node_id: int
    node_config: UserConfig
    state: RecordDict = field(default_factory=RecordDict)
    run_config: UserConfig = field(default_factory=dict)
