"""MultiKrum, Message API: average the replies with the lowest Krum scores."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.server.strategy.robust import krum_select

from ._models import reply_models
from .fedavg import FedAvg, MetricsAggrFn
from .strategy_utils import aggregate_arrayrecords

__all__ = ["MultiKrum", "select_multikrum"]

logger = logging.getLogger(__name__)


def select_multikrum(
    contents: list[RecordDict], num_malicious_nodes: int, num_nodes_to_select: int
) -> list[RecordDict]:
    """The `num_nodes_to_select` reply contents with the lowest Krum scores, best first.

    A reply's score is the sum of its squared L2 distances to its n - f - 2 nearest other
    replies (n replies, f = `num_malicious_nodes`); 1 selected is classical Krum.
    """
    _, models = reply_models(contents)
    return [contents[i] for i in krum_select(models, num_malicious_nodes, num_nodes_to_select)]


class MultiKrum(FedAvg):
    """MultiKrum (Blanchard et al., https://arxiv.org/abs/1703.02757).

    The weighted average (by `weighted_by_key`) of the `num_nodes_to_select` replies with
    the lowest Krum scores; their metrics only are aggregated.

    Parameters
    ----------
    num_malicious_nodes : int (default: 0)
        f, the number of malicious nodes assumed.
    num_nodes_to_select : int (default: 1)
        How many replies to average; 1 is classical Krum.
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
        num_nodes_to_select: int = 1,
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
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.num_malicious_nodes = num_malicious_nodes
        self.num_nodes_to_select = num_nodes_to_select

    def summary(self) -> None:
        """Log the Krum settings, then FedAvg's."""
        logger.info("\t├──> MultiKrum settings:")
        logger.info("\t│\t├── Number of malicious nodes: %d", self.num_malicious_nodes)
        logger.info("\t│\t└── Number of nodes to select: %d", self.num_nodes_to_select)
        super().summary()

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The weighted average of the selected replies' arrays and of their metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        selected = select_multikrum(
            [message.content for message in valid],
            self.num_malicious_nodes,
            self.num_nodes_to_select,
        )
        arrays = aggregate_arrayrecords(selected, self.weighted_by_key)
        return arrays, self.train_metrics_aggr_fn(selected, self.weighted_by_key)
