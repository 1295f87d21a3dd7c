"""FedMedian, Message API: the coordinate-wise median of the replies' arrays."""

from __future__ import annotations

from collections.abc import Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord
from stamen.server.strategy.robust import median

from ._models import reply_models, to_arrayrecord
from .fedavg import FedAvg

__all__ = ["FedMedian"]


class FedMedian(FedAvg):
    """Federated Median (Yin et al., https://arxiv.org/abs/1803.01498).

    FedAvg's sampling; the new arrays are the coordinate-wise median of the replies'
    (weights do not enter the median; they still weight the metrics). Takes FedAvg's
    arguments: `fraction_train`, `fraction_evaluate`, `min_train_nodes`,
    `min_evaluate_nodes`, `min_available_nodes`, `weighted_by_key`, `arrayrecord_key`,
    `configrecord_key`, `train_metrics_aggr_fn`, `evaluate_metrics_aggr_fn`.
    """

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The median of the replies' arrays and the weighted average of their metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        keys, models = reply_models(contents)
        arrays = to_arrayrecord(keys, median(models))
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)
