"""FedXgbBagging, Message API: federated XGBoost by bagging the clients' new trees."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stamen.common.errors import InconsistentMessageReplies
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord
from stamen.server.grid import Grid
from stamen.server.strategy.xgb import aggregate_bagging

from .fedavg import FedAvg

__all__ = ["FedXgbBagging"]


def _model_bytes(arrays: ArrayRecord) -> bytes:
    """The xgboost JSON model held as the record's one uint8 array."""
    if len(arrays) != 1:
        raise InconsistentMessageReplies(
            "Expected exactly one Array in ArrayRecord. Skipping aggregation."
        )
    return next(iter(arrays.values())).numpy().tobytes()


class FedXgbBagging(FedAvg):
    """Each round, the trees every node grew are appended to the global XGBoost model.

    The model travels as one uint8 Array of xgboost's JSON bytes (start from an empty
    one). Takes FedAvg's arguments: `fraction_train`, `fraction_evaluate`,
    `min_train_nodes`, `min_evaluate_nodes`, `min_available_nodes`, `weighted_by_key`,
    `arrayrecord_key`, `configrecord_key`, `train_metrics_aggr_fn`,
    `evaluate_metrics_aggr_fn`.
    """

    current_bst: bytes | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's instructions; remembers the round's global model."""
        self.current_bst = _model_bytes(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The global model with every reply's new trees, and the aggregated metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        key = next(iter(contents[0].array_records))
        for content in contents:
            record = content[key]
            assert isinstance(record, ArrayRecord)  # checked by _check_and_log_replies
            bst = _model_bytes(record)
            if self.current_bst is not None:
                self.current_bst = aggregate_bagging(self.current_bst, bst)
        arrays = None
        if self.current_bst is not None:
            arrays = ArrayRecord([np.frombuffer(self.current_bst, dtype=np.uint8)])
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)
