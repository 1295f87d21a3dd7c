"""Krum, Message API: keep the one reply closest to the others."""

from __future__ import annotations

import logging

from .fedavg import MetricsAggrFn
from .multikrum import MultiKrum

__all__ = ["Krum"]

logger = logging.getLogger(__name__)


class Krum(MultiKrum):
    """Krum (Blanchard et al., https://arxiv.org/abs/1703.02757): MultiKrum selecting one.

    The new arrays are those of the reply with the lowest Krum score: the sum of its
    squared distances to its n - f - 2 nearest other replies.

    Parameters
    ----------
    num_malicious_nodes : int (default: 0)
        f, the number of malicious nodes assumed.
    fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
    min_available_nodes, weighted_by_key, arrayrecord_key, configrecord_key,
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn
        As for `FedAvg`.
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        num_malicious_nodes: int = 0,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggrFn | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            num_malicious_nodes=num_malicious_nodes,
            num_nodes_to_select=1,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
