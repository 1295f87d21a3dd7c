"""FedXgbCyclic, Message API: one node at a time boosts the global XGBoost model."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server.grid import Grid

from .fedavg import FedAvg, MetricsAggrFn
from .strategy_utils import node_order, sample_nodes

__all__ = ["FedXgbCyclic"]

logger = logging.getLogger(__name__)


class FedXgbCyclic(FedAvg):
    """Round r trains (and evaluates) on one node: the ((r - 1) mod n)-th of the n sampled
    nodes in partition-id order; its reply becomes the global model.

    Parameters
    ----------
    fraction_train : float (default: 1.0)
        1.0 or 0.0 (0.0 skips training).
    fraction_evaluate : float (default: 1.0)
        1.0 or 0.0 (0.0 skips evaluation).
    min_available_nodes : int (default: 2)
        Minimum number of connected nodes before a round samples.
    weighted_by_key, arrayrecord_key, configrecord_key, train_metrics_aggr_fn,
    evaluate_metrics_aggr_fn
        As for `FedAvg`.
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggrFn | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=2,
            min_evaluate_nodes=2,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        if fraction_train not in (0.0, 1.0):
            raise ValueError("fraction_train can only be set to 1.0 or 0.0 for FedXgbCyclic.")
        if fraction_evaluate not in (0.0, 1.0):
            raise ValueError("fraction_evaluate can only be set to 1.0 or 0.0 for FedXgbCyclic.")

    def _one_node(self, grid: Grid, server_round: int, phase: str) -> list[int]:
        sample_size = max(int(len(grid.get_node_ids()) * self.fraction_train), self.min_train_nodes)
        node_ids, _ = sample_nodes(grid, self.min_available_nodes, sample_size)
        order = node_order(grid)
        ranked = sorted(node_ids, key=lambda node: order.get(node, (2, 0, node)))
        self._order.update(order)
        chosen = [ranked[(server_round - 1) % len(ranked)]]
        logger.info("%s: Sampled %s nodes (out of %s)", phase, len(chosen), len(ranked))
        return chosen

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The global model to this round's one node."""
        if self.fraction_train == 0.0:
            return []
        node_ids = self._one_node(grid, server_round, "configure_train")
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The global model to this round's one node, for evaluation."""
        if self.fraction_evaluate == 0.0:
            return []
        node_ids = self._one_node(grid, server_round, "configure_evaluate")
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, MessageType.EVALUATE)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The (first) reply's model becomes the global model."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        record = contents[0][next(iter(contents[0].array_records))]
        assert isinstance(record, ArrayRecord)
        return record, self.train_metrics_aggr_fn(contents, self.weighted_by_key)
