"""The fit-metrics step every legacy FedAvg-derived strategy ends its aggregation with."""

from __future__ import annotations

from stamen.common.legacy import FitRes, Scalar

from ..client_proxy import ClientProxy
from .fedavg import FedAvg

__all__ = ["fit_metrics"]


def fit_metrics(strategy: FedAvg, results: list[tuple[ClientProxy, FitRes]]) -> dict[str, Scalar]:
    """`fit_metrics_aggregation_fn` over the results as given, or {} with a one-time warning."""
    if strategy.fit_metrics_aggregation_fn is None:
        strategy._warn_once("No fit_metrics_aggregation_fn provided")
        return {}
    return strategy.fit_metrics_aggregation_fn([(r.num_examples, r.metrics) for _, r in results])
