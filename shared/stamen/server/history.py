"""History: the losses and metrics a run produced, round by round (Flower's shape)."""

from __future__ import annotations

from collections.abc import Mapping

from stamen.common.legacy import Scalar

__all__ = ["History"]


class History:
    """Losses as `[(round, loss)]`; metrics as `{name: [(round, value)]}`; how long each
    round took as `round_times`, `[(round, seconds)]`."""

    def __init__(self) -> None:
        self.losses_distributed: list[tuple[int, float]] = []
        self.losses_centralized: list[tuple[int, float]] = []
        self.metrics_distributed_fit: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_distributed: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_centralized: dict[str, list[tuple[int, Scalar]]] = {}
        self.round_times: list[tuple[int, float]] = []

    def add_loss_distributed(self, server_round: int, loss: float) -> None:
        self.losses_distributed.append((server_round, loss))

    def add_loss_centralized(self, server_round: int, loss: float) -> None:
        self.losses_centralized.append((server_round, loss))

    def add_round_time(self, server_round: int, seconds: float) -> None:
        self.round_times.append((server_round, seconds))

    def add_metrics_distributed_fit(self, server_round: int, metrics: Mapping[str, Scalar]) -> None:
        _add_metrics(self.metrics_distributed_fit, server_round, metrics)

    def add_metrics_distributed(self, server_round: int, metrics: Mapping[str, Scalar]) -> None:
        _add_metrics(self.metrics_distributed, server_round, metrics)

    def add_metrics_centralized(self, server_round: int, metrics: Mapping[str, Scalar]) -> None:
        _add_metrics(self.metrics_centralized, server_round, metrics)

    def __repr__(self) -> str:
        lines: list[str] = []
        for title, losses in (
            ("loss, distributed", self.losses_distributed),
            ("loss, centralized", self.losses_centralized),
        ):
            if losses:
                lines.append(f"History ({title}):")
                lines.extend(f"\tround {r}: {loss}" for r, loss in losses)
        for title, metrics in (
            ("metrics, distributed, fit", self.metrics_distributed_fit),
            ("metrics, distributed, evaluate", self.metrics_distributed),
            ("metrics, centralized", self.metrics_centralized),
        ):
            if metrics:
                lines.append(f"History ({title}):")
                for name, values in metrics.items():
                    lines.append(f"\t{name}:")
                    lines.extend(f"\t\tround {r}: {value!r}" for r, value in values)
        return "\n".join(lines) + "\n" if lines else "History (empty)\n"


def _add_metrics(
    target: dict[str, list[tuple[int, Scalar]]], server_round: int, metrics: Mapping[str, Scalar]
) -> None:
    for key, value in metrics.items():
        target.setdefault(key, []).append((server_round, value))
