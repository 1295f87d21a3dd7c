"""Result: what `Strategy.start` hands back (the final model and every round's metrics)."""

from __future__ import annotations

import pprint
from dataclasses import dataclass, field

from stamen.common.records import ArrayRecord, MetricRecord, MetricValue

__all__ = ["Result"]


@dataclass
class Result:
    """The records a strategy produced over a run.

    Attributes
    ----------
    arrays : ArrayRecord
        The final global model (empty if no round produced one).
    train_metrics_clientapp : dict[int, MetricRecord]
        Per round, the training metrics aggregated from the ClientApps' replies.
    evaluate_metrics_clientapp : dict[int, MetricRecord]
        Per round, the evaluation metrics aggregated from the ClientApps' replies.
    evaluate_metrics_serverapp : dict[int, MetricRecord]
        Per round (0 = the initial model), the ServerApp's own `evaluate_fn` metrics.
    """

    arrays: ArrayRecord = field(default_factory=ArrayRecord)
    train_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_serverapp: dict[int, MetricRecord] = field(default_factory=dict)

    def __repr__(self) -> str:
        """The summary `start` logs: model size, then each kind of metric by round."""
        size = self.arrays.nbytes / (1024**2)
        return (
            f"Global Arrays:\n\tArrayRecord ({size:.3f} MB)\n\n"
            "Aggregated ClientApp-side Train Metrics:\n"
            f"{_format(self.train_metrics_clientapp)}\n\n"
            "Aggregated ClientApp-side Evaluate Metrics:\n"
            f"{_format(self.evaluate_metrics_clientapp)}\n\n"
            "ServerApp-side Evaluate Metrics:\n"
            f"{_format(self.evaluate_metrics_serverapp)}\n"
        )


def _format(by_round: dict[int, MetricRecord]) -> str:
    text = {
        server_round: {key: _format_value(value) for key, value in metrics.items()}
        for server_round, metrics in by_round.items()
    }
    return pprint.pformat(text, indent=2)


def _format_value(value: MetricValue) -> str:
    """Floats in scientific notation (4 decimals), as Flower shows them."""
    if isinstance(value, list):
        return str([f"{x:.4e}" if isinstance(x, float) else str(x) for x in value])
    return f"{value:.4e}" if isinstance(value, float) else str(value)
