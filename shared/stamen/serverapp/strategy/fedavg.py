"""FedAvg for the Message API: Flower 1.42's arguments, defaults, log lines and replies.

The one difference makes results reproducible: replies are aggregated in the order of
their senders' partition ids (then node ids), whatever order they arrived in, through
the same float64 kernel as the legacy FedAvg.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server.client_proxy import failure_reason
from stamen.server.grid import Grid

from .strategy import Strategy
from .strategy_utils import (
    NodeOrder,
    aggregate_arrayrecords,
    aggregate_metricrecords,
    node_order,
    order_replies,
    sample_nodes,
    validate_message_reply_consistency,
)

__all__ = ["FedAvg", "MetricsAggrFn"]

logger = logging.getLogger(__name__)

MetricsAggrFn = Callable[[list[RecordDict], str], MetricRecord]
"""(reply contents, weighted_by_key) -> aggregated metrics."""


class FedAvg(Strategy):
    """Federated Averaging (McMahan et al., https://arxiv.org/abs/1602.05629).

    Parameters
    ----------
    fraction_train : float (default: 1.0)
        Fraction of the connected nodes sampled for training; at least
        `min_train_nodes` are sampled. 0.0 skips federated training.
    fraction_evaluate : float (default: 1.0)
        Fraction of the connected nodes sampled for evaluation; at least
        `min_evaluate_nodes` are sampled. 0.0 skips federated evaluation.
    min_train_nodes : int (default: 2)
        Minimum number of nodes sampled for training.
    min_evaluate_nodes : int (default: 2)
        Minimum number of nodes sampled for evaluation.
    min_available_nodes : int (default: 2)
        Minimum number of connected nodes before a round samples.
    weighted_by_key : str (default: "num-examples")
        The key, in each reply's MetricRecord, of the weight of that reply in the
        averages of arrays and metrics.
    arrayrecord_key : str (default: "arrays")
        Key of the ArrayRecord in the instructions' RecordDict.
    configrecord_key : str (default: "config")
        Key of the ConfigRecord in the instructions' RecordDict.
    train_metrics_aggr_fn : Callable[[list[RecordDict], str], MetricRecord], optional
        Aggregates the training replies' metrics (given the reply contents and
        `weighted_by_key`); default `aggregate_metricrecords`, a weighted average.
    evaluate_metrics_aggr_fn : Callable[[list[RecordDict], str], MetricRecord], optional
        The same for the evaluation replies.
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
    ) -> None:
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.train_metrics_aggr_fn = train_metrics_aggr_fn or aggregate_metricrecords
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn or aggregate_metricrecords
        self._order: NodeOrder = {}
        if self.fraction_evaluate == 0.0:
            self.min_evaluate_nodes = 0
            logger.warning("fraction_evaluate is set to 0.0. Federated evaluation will be skipped.")
        if self.fraction_train == 0.0:
            self.min_train_nodes = 0
            logger.warning("fraction_train is set to 0.0. Federated training will be skipped.")

    def summary(self) -> None:
        """Log the sampling settings and the record keys."""
        logger.info("\t├──> Sampling:")
        logger.info(
            "\t│\t├──Fraction: train (%.2f) | evaluate ( %.2f)",
            self.fraction_train,
            self.fraction_evaluate,
        )
        logger.info(
            "\t│\t├──Minimum nodes: train (%d) | evaluate (%d)",
            self.min_train_nodes,
            self.min_evaluate_nodes,
        )
        logger.info("\t│\t└──Minimum available nodes: %d", self.min_available_nodes)
        logger.info("\t└──> Keys in records:")
        logger.info("\t\t├── Weighted by: '%s'", self.weighted_by_key)
        logger.info("\t\t├── ArrayRecord key: '%s'", self.arrayrecord_key)
        logger.info("\t\t└── ConfigRecord key: '%s'", self.configrecord_key)

    # --- instructions -------------------------------------------------------------------

    def _sample(self, grid: Grid, fraction: float, minimum: int, phase: str) -> list[int]:
        """Sample nodes as Flower does, and remember where each goes in the sums."""
        sample_size = max(int(len(grid.get_node_ids()) * fraction), minimum)
        node_ids, all_nodes = sample_nodes(grid, self.min_available_nodes, sample_size)
        self._order.update(node_order(grid))
        logger.info("%s: Sampled %s nodes (out of %s)", phase, len(node_ids), len(all_nodes))
        return node_ids

    def _construct_messages(
        self, record: RecordDict, node_ids: list[int], message_type: str
    ) -> list[Message]:
        """One message per node, all sharing `record` (so the model is encoded once)."""
        return [Message(record, node_id, message_type) for node_id in node_ids]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes and send each the arrays and `config` (plus "server-round")."""
        if self.fraction_train == 0.0:
            return []
        node_ids = self._sample(grid, self.fraction_train, self.min_train_nodes, "configure_train")
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes and send each the arrays and `config` (plus "server-round")."""
        if self.fraction_evaluate == 0.0:
            return []
        node_ids = self._sample(
            grid, self.fraction_evaluate, self.min_evaluate_nodes, "configure_evaluate"
        )
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, MessageType.EVALUATE)

    # --- replies ------------------------------------------------------------------------

    def _check_and_log_replies(
        self, replies: Iterable[Message], is_train: bool, validate: bool = True
    ) -> tuple[list[Message], list[Message]]:
        """The replies with content (in sum order) and those with an error; logs both
        and, if `validate`, checks the contents have the records to aggregate."""
        received = list(replies)
        if not received:
            return [], []
        valid = order_replies((m for m in received if not m.has_error()), self._order)
        errors = [m for m in received if m.has_error()]
        logger.info(
            "%s: Received %s results and %s failures",
            "aggregate_train" if is_train else "aggregate_evaluate",
            len(valid),
            len(errors),
        )
        for message in errors:
            node_id = message.metadata.src_node_id
            reason = failure_reason(message, None).removeprefix(f"node {node_id}: ")
            logger.info("\t> Received error in reply from node %d: %s", node_id, reason)
        if validate and valid:
            validate_message_reply_consistency(
                [m.content for m in valid], self.weighted_by_key, check_arrayrecord=is_train
            )
        return valid, errors

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The weighted average of the replies' arrays and of their metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        arrays = aggregate_arrayrecords(contents, self.weighted_by_key)
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The weighted average of the replies' metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=False)
        if not valid:
            return None
        contents = [message.content for message in valid]
        return self.evaluate_metrics_aggr_fn(contents, self.weighted_by_key)
