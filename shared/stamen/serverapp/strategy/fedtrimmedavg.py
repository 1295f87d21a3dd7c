"""FedTrimmedAvg, Message API: the coordinate-wise trimmed mean of the replies' arrays."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord
from stamen.server.strategy.robust import trimmed_mean

from ._models import reply_models, to_arrayrecord
from .fedavg import FedAvg, MetricsAggrFn

__all__ = ["FedTrimmedAvg"]

logger = logging.getLogger(__name__)


class FedTrimmedAvg(FedAvg):
    """Federated Averaging with Trimmed Mean (Yin et al., https://arxiv.org/abs/1803.01498).

    Parameters
    ----------
    beta : float (default: 0.2)
        Fraction cut off each tail at every coordinate, in ``[0, 0.5)``:
        ``int(beta * number of replies)`` values go from each side before averaging.
    fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
    min_available_nodes, weighted_by_key, arrayrecord_key, configrecord_key,
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn
        As for `FedAvg` (`weighted_by_key` weights the metrics only).
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggrFn | None = None,
        beta: float = 0.2,
    ) -> None:
        if not 0.0 <= beta < 0.5:
            raise ValueError("`beta` must be in the range [0, 0.5).")
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.beta = beta

    def summary(self) -> None:
        """Log beta, then FedAvg's settings."""
        logger.info("\t├──> FedTrimmedAvg settings:")
        logger.info("\t│\t└── beta: %s", self.beta)
        super().summary()

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The trimmed mean of the replies' arrays and the weighted average of their metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        keys, models = reply_models(contents)
        arrays = to_arrayrecord(keys, trimmed_mean(models, self.beta))
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)
