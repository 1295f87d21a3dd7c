"""QFedAvg, Message API: q-fair federated averaging."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.errors import AggregationError
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord
from stamen.server.grid import Grid
from stamen.server.strategy.qffl import qffl_update

from ._models import reply_models, to_arrayrecord
from .fedavg import FedAvg, MetricsAggrFn

__all__ = ["QFedAvg"]

logger = logging.getLogger(__name__)


class QFedAvg(FedAvg):
    """q-FedAvg (Li et al., https://openreview.net/pdf?id=ByexElSYDr).

    Replies from nodes whose training loss is higher weigh more; q sets how much more.

    Parameters
    ----------
    client_learning_rate : float
        The nodes' local learning rate; L = 1 / it estimates the Lipschitz constant.
    q : float (default: 0.1)
        The fairness exponent; 0 makes the update FedAvg's (unweighted).
    train_loss_key : str (default: "train_loss")
        The key, in each training reply's MetricRecord, of the node's training loss.
    fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
    min_available_nodes, weighted_by_key, arrayrecord_key, configrecord_key,
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn
        As for `FedAvg` (`weighted_by_key` weights the metrics only).
    """

    def __init__(
        self,
        client_learning_rate: float,
        q: float = 0.1,
        train_loss_key: str = "train_loss",
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
        self.q = q
        self.client_learning_rate = client_learning_rate
        self.train_loss_key = train_loss_key
        self.current_arrays: ArrayRecord | None = None

    def summary(self) -> None:
        """Log the q-FedAvg settings, then FedAvg's."""
        logger.info("\t├──> q-FedAvg settings:")
        logger.info("\t│\t├── client_learning_rate: %s", self.client_learning_rate)
        logger.info("\t│\t├── q: %s", self.q)
        logger.info("\t│\t└── train_loss_key: '%s'", self.train_loss_key)
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's instructions; remembers the round's starting arrays."""
        self.current_arrays = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The q-FFL step from the round's arrays and the weighted average of the metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        if self.current_arrays is None:
            raise AggregationError(
                "Current global model weights are not available. Make sure to call "
                "`configure_train` before calling `aggregate_train`."
            )
        contents = [message.content for message in valid]
        keys = list(self.current_arrays.keys())
        current = [self.current_arrays[key].numpy() for key in keys]
        _, models = reply_models(contents)
        losses = [self._train_loss(message) for message in valid]
        lipschitz = 1.0 / self.client_learning_rate
        updated = qffl_update(current, list(zip(models, losses, strict=True)), self.q, lipschitz)
        arrays = to_arrayrecord(keys, updated)
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)

    def _train_loss(self, message: Message) -> float:
        metrics = next(iter(message.content.metric_records.values()))
        loss = metrics.get(self.train_loss_key)
        if isinstance(loss, bool) or not isinstance(loss, int | float):
            raise AggregationError(
                "Missing or invalid training loss. The strategy expected a float value for "
                f"the key '{self.train_loss_key}' as the training loss in each MetricRecord "
                f"from the clients (node {message.metadata.src_node_id} sent {loss!r})."
            )
        return float(loss)
