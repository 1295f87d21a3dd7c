"""RoundBook: the rounds each run reported (ReportRound), for dashboards and metrics.

Kept in memory only: a restarted SuperLink shows the rounds reported since it started.
The run's History, kept by the runner, is the lasting record; this is the live view.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_ROUNDS_KEPT", "RoundBook", "RoundRecord"]

MAX_ROUNDS_KEPT = 10_000
"""Rounds kept per run; older ones are dropped first."""


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One ended round: its number, how long it took (0: unknown), its numeric metrics
    by tracker name, and when it was reported (wall clock)."""

    server_round: int
    seconds: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    reported_at: float = 0.0


class RoundBook:
    """Per run, its reported rounds in order (a round reported again replaces itself)."""

    def __init__(self, max_rounds: int = MAX_ROUNDS_KEPT) -> None:
        self._max_rounds = max_rounds
        self._runs: dict[int, deque[RoundRecord]] = {}

    def add(self, run_id: int, record: RoundRecord) -> None:
        rounds = self._runs.setdefault(run_id, deque(maxlen=self._max_rounds))
        if rounds and rounds[-1].server_round == record.server_round:
            rounds.pop()
        rounds.append(record)

    def rounds(self, run_id: int) -> list[RoundRecord]:
        return list(self._runs.get(run_id, ()))

    def last_round(self, run_id: int) -> int:
        """The number of the last reported round (0: none yet)."""
        rounds = self._runs.get(run_id)
        return rounds[-1].server_round if rounds else 0
