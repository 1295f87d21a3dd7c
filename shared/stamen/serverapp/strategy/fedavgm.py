"""FedAvgM: federated averaging with server momentum, Message API (Hsu et al., 2019).

The server step is `stamen.server.strategy.server_opt.MomentumOptimizer`, shared with the
legacy API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.errors import AggregationError
from stamen.common.message import Message
from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server.grid import Grid
from stamen.server.strategy.server_opt import MomentumOptimizer

from .fedavg import FedAvg, MetricsAggrFn

__all__ = ["FedAvgM"]

logger = logging.getLogger(__name__)


class FedAvgM(FedAvg):
    """Federated averaging with server momentum (https://arxiv.org/abs/1909.06335).

    With the defaults (learning rate 1.0, momentum 0.0) it is FedAvg. Otherwise each
    round's new arrays are current - server_learning_rate * momentum_vector, where the
    pseudo-gradient is current - FedAvg's aggregate, and `current_arrays` (the arrays of
    the first `configure_train`, then each new model) carries the model between rounds.

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
        The key, in each reply's MetricRecord, of the reply's weight in the averages.
    arrayrecord_key : str (default: "arrays")
        Key of the ArrayRecord in the instructions' RecordDict.
    configrecord_key : str (default: "config")
        Key of the ConfigRecord in the instructions' RecordDict.
    train_metrics_aggr_fn : Callable[[list[RecordDict], str], MetricRecord], optional
        Aggregates the training replies' metrics; default: a weighted average.
    evaluate_metrics_aggr_fn : Callable[[list[RecordDict], str], MetricRecord], optional
        Aggregates the evaluation replies' metrics; default: a weighted average.
    server_learning_rate : float (default: 1.0)
        Server-side learning rate.
    server_momentum : float (default: 0.0)
        Server-side momentum factor.
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
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.0,
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
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.server_opt: bool = server_momentum != 0.0 or server_learning_rate != 1.0
        self.current_arrays: ArrayRecord | None = None
        self.optimizer = MomentumOptimizer(server_learning_rate, server_momentum)

    def _checkpoint_state(self) -> RecordDict:
        """The momentum vector (none before the first step, or without momentum)."""
        momentum = self.optimizer.momentum_vector
        return RecordDict() if momentum is None else RecordDict({"momentum": ArrayRecord(momentum)})

    def _restore_state(self, state: RecordDict) -> None:
        if set(state) != {"momentum"}:
            super()._restore_state(state)  # nothing, or not this strategy's
            return
        momentum = state.array_records["momentum"].to_numpy_ndarrays()
        self.optimizer.momentum_vector = [a.copy() for a in momentum]

    def summary(self) -> None:
        """Log the server optimizer's settings, then FedAvg's."""
        logger.info("\t├──> FedAvgM settings:")
        logger.info("\t│\t├── Server optimization: %s", "ON" if self.server_opt else "OFF")
        logger.info("\t│\t├── Server learning rate: %s", self.server_learning_rate)
        logger.info("\t│\t└── Server Momentum: %s", self.server_momentum)
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's instructions; the first call's `arrays` are the model momentum starts from."""
        if self.current_arrays is None:
            self.current_arrays = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregate, then (if server optimization is on) one momentum SGD step."""
        aggregated, metrics = super().aggregate_train(server_round, replies)
        if aggregated is None or not self.server_opt:
            return aggregated, metrics
        if self.current_arrays is None:
            raise AggregationError(
                "No initial parameters set for FedAvgM. "
                "Ensure that `configure_train` has been called before aggregation."
            )
        keys = list(aggregated)
        new = self.optimizer.step(
            self.current_arrays.to_numpy_ndarrays(), aggregated.to_numpy_ndarrays()
        )
        self.current_arrays = ArrayRecord(
            {key: Array(array) for key, array in zip(keys, new, strict=True)}
        )
        return self.current_arrays, metrics
