"""FailurePolicy: when a round's failed nodes fail the whole run.

Read from the run config: "max-failure-rate" (a round whose share of failed nodes is
above it fails the run; default 1.0) and "allow-empty-rounds" (default false: a round in
which every node failed fails the run). Both round loops apply it after each exchange:
the legacy `DefaultWorkflow` and the Message-API `Strategy.start`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stamen.common.errors import ConfigError, RoundFailedError
from stamen.common.records import UserConfigValue

__all__ = ["FailurePolicy", "failure_policy"]


@dataclass(frozen=True)
class FailurePolicy:
    """When a round's failures fail the run."""

    max_failure_rate: float = 1.0
    allow_empty_rounds: bool = False

    def check(self, server_round: int, phase: str, results: int, reasons: list[str]) -> None:
        """RoundFailedError when `reasons` (one per failed node) are too many beside
        `results` replies."""
        if not reasons:
            return
        if results == 0 and not self.allow_empty_rounds:
            why = "none replied with a result (set run config allow-empty-rounds=true to go on)"
            raise RoundFailedError(server_round, phase, reasons, why)
        rate = len(reasons) / (results + len(reasons))
        if rate > self.max_failure_rate:
            why = f"{rate:.0%} of the nodes failed, over max-failure-rate {self.max_failure_rate:g}"
            raise RoundFailedError(server_round, phase, reasons, why)


def failure_policy(run_config: Mapping[str, UserConfigValue]) -> FailurePolicy:
    """The run config's policy; ConfigError for a malformed value."""
    raw_rate = run_config.get("max-failure-rate", 1.0)
    try:
        rate = float(raw_rate)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(
            f"run config 'max-failure-rate' must be a number in [0, 1], got {raw_rate!r}"
        )
    allow = run_config.get("allow-empty-rounds", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"run config 'allow-empty-rounds' must be true or false, got {allow!r}")
    return FailurePolicy(rate, allow)
