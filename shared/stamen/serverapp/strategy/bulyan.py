"""Bulyan, Message API: Krum selection, then a trimmed mean around the median."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.server.strategy.robust import mean_closest_to_median

from ._models import reply_models, to_arrayrecord
from .fedavg import FedAvg, MetricsAggrFn
from .multikrum import select_multikrum

__all__ = ["Bulyan"]

logger = logging.getLogger(__name__)

SelectionRule = Callable[[list[RecordDict], int, int], list[RecordDict]]


class Bulyan(FedAvg):
    """Bulyan (El Mhamdi et al., https://arxiv.org/abs/1802.07927).

    With n replies and f malicious nodes, the selection rule keeps theta = n - 2f
    replies; per coordinate, the new value is the mean of the beta = theta - 2f kept
    values closest to their median. A round with fewer than 4f + 3 replies is skipped
    with a warning. Metrics are aggregated over the kept replies.

    Parameters
    ----------
    num_malicious_nodes : int (default: 0)
        f, the number of malicious nodes assumed.
    selection_rule : Callable[[list[RecordDict], int, int], list[RecordDict]], optional
        Given the reply contents, f and theta, the theta contents to keep; default
        `select_multikrum`.
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
        num_malicious_nodes: int = 0,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggrFn | None = None,
        selection_rule: SelectionRule | None = None,
    ) -> None:
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
        self.num_malicious_nodes = num_malicious_nodes
        self.selection_rule: SelectionRule = selection_rule or select_multikrum

    def summary(self) -> None:
        """Log the Bulyan settings, then FedAvg's."""
        logger.info("\t├──> Bulyan settings:")
        logger.info("\t│\t├── Number of malicious nodes: %d", self.num_malicious_nodes)
        logger.info("\t│\t└── Selection rule: %s", getattr(self.selection_rule, "__name__", "?"))
        super().summary()

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Bulyan's aggregate of the replies' arrays and the kept replies' metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        required = 4 * self.num_malicious_nodes + 3
        if len(valid) < required:
            logger.warning(
                "Insufficient replies, skipping Bulyan aggregation: "
                "Required at least %d (4*num_malicious_nodes + 3), but received %d.",
                required,
                len(valid),
            )
            return None, None
        theta = len(valid) - 2 * self.num_malicious_nodes
        beta = theta - 2 * self.num_malicious_nodes
        selected = self.selection_rule(
            [message.content for message in valid], self.num_malicious_nodes, theta
        )
        keys, models = reply_models(selected)
        arrays = to_arrayrecord(keys, mean_closest_to_median(models, beta))
        return arrays, self.train_metrics_aggr_fn(selected, self.weighted_by_key)
