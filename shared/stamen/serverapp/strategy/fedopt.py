"""FedOpt and its adaptive variants (FedAdam, FedYogi, FedAdagrad), Message API.

`configure_train` remembers the global arrays it sends; `aggregate_train` takes FedAvg's
aggregate minus them as a pseudo-gradient and applies the server optimizer
(`stamen.server.strategy.server_opt.AdaptiveOptimizer`, shared with the legacy API).
Flower 1.42's arguments and defaults. The new arrays keep the model's dtypes (Flower's
FedAdam returns float64 arrays for a float32 model).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy.typing as npt

from stamen.common.errors import AggregationError
from stamen.common.message import Message
from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server.grid import Grid
from stamen.server.strategy.fedopt_base import FedOptArguments, OptimizerDefaults
from stamen.server.strategy.server_opt import Variant

from .fedavg import FedAvg, MetricsAggrFn

__all__ = ["FedAdagrad", "FedAdam", "FedOpt", "FedYogi"]

logger = logging.getLogger(__name__)


class FedOpt(FedOptArguments, FedAvg):
    """Federated optimization (Reddi et al., https://arxiv.org/abs/2003.00295v5): the base of
    FedAdam, FedYogi and FedAdagrad. On its own it aggregates as FedAvg.

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
    eta : float (FedOpt's default: 1e-1)
        Server-side learning rate.
    eta_l : float (FedOpt's default: 1e-1)
        Client-side learning rate (kept for the clients' configuration; unused here).
    beta_1 : float (FedOpt's default: 0.0)
        Momentum parameter.
    beta_2 : float (FedOpt's default: 0.0)
        Second moment parameter.
    tau : float (FedOpt's default: 1e-3)
        Controls the algorithm's degree of adaptability.

    The optimizer's arguments left at None take the class's defaults (FedAdam's, FedYogi's
    and FedAdagrad's differ; each lists its own).
    """

    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-1, 1e-1, 0.0, 0.0, 1e-3)

    def __init__(
        self,
        *,
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
        eta: float | None = None,
        eta_l: float | None = None,
        beta_1: float | None = None,
        beta_2: float | None = None,
        tau: float | None = None,
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
        self.current_arrays: dict[str, npt.NDArray[Any]] | None = None
        self._set_optimizer(eta, eta_l, beta_1, beta_2, tau)

    @property
    def m_t(self) -> dict[str, npt.NDArray[Any]] | None:
        """The first moment, by array key (None before the first aggregation)."""
        return self._by_key(None if self.optimizer is None else self.optimizer.m_t)

    @property
    def v_t(self) -> dict[str, npt.NDArray[Any]] | None:
        """The second moment, by array key (None before the first aggregation)."""
        return self._by_key(None if self.optimizer is None else self.optimizer.v_t)

    def _by_key(self, arrays: list[npt.NDArray[Any]] | None) -> dict[str, npt.NDArray[Any]] | None:
        if arrays is None or self.current_arrays is None:
            return None
        return dict(zip(self.current_arrays, arrays, strict=True))

    def _checkpoint_state(self) -> RecordDict:
        """The server optimizer's moments (none before its first step)."""
        optimizer = self.optimizer
        if optimizer is None or optimizer.m_t is None or optimizer.v_t is None:
            return RecordDict()
        return RecordDict({"m_t": ArrayRecord(optimizer.m_t), "v_t": ArrayRecord(optimizer.v_t)})

    def _restore_state(self, state: RecordDict) -> None:
        if self.optimizer is None or set(state) != {"m_t", "v_t"}:
            super()._restore_state(state)  # nothing, or not this strategy's
            return
        moments = state.array_records
        self.optimizer.m_t = [a.copy() for a in moments["m_t"].to_numpy_ndarrays()]
        self.optimizer.v_t = [a.copy() for a in moments["v_t"].to_numpy_ndarrays()]

    def summary(self) -> None:
        """Log the optimizer's settings, then FedAvg's."""
        logger.info("\t├──> FedOpt settings:")
        logger.info("\t│\t├── eta (%s) | eta_l (%s)", f"{self.eta:.6g}", f"{self.eta_l:.6g}")
        logger.info(
            "\t│\t├── beta_1 (%s) | beta_2 (%s)", f"{self.beta_1:.6g}", f"{self.beta_2:.6g}"
        )
        logger.info("\t│\t└── tau (%s)", f"{self.tau:.6g}")
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's instructions; remembers `arrays`, the model the update steps from."""
        self.current_arrays = {key: array.numpy() for key, array in arrays.items()}
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregate, then one step of the server optimizer."""
        aggregated, metrics = super().aggregate_train(server_round, replies)
        if aggregated is None or self.optimizer is None:
            return aggregated, metrics
        current = self.current_arrays
        if current is None:
            raise AggregationError(
                "Current arrays not set. Ensure that `configure_train` has been called "
                "before aggregation."
            )
        if set(aggregated) != set(current):
            raise AggregationError(
                "Keys of the aggregated arrays do not match those of the arrays stored at "
                "the strategy. `delta_t = aggregated_arrays - current_arrays` cannot be computed."
            )
        keys = list(current)
        new = self.optimizer.step(
            [current[key] for key in keys],
            [aggregated[key].numpy() for key in keys],  # FedAvg's fresh arrays: reused
            server_round,
            in_place=True,
        )
        return ArrayRecord(
            {key: Array(array) for key, array in zip(keys, new, strict=True)}
        ), metrics


class FedAdam(FedOpt):
    """FedAdam: adaptive federated optimization with Adam (https://arxiv.org/abs/2003.00295v5).

    Takes `FedOpt`'s arguments, with these defaults: eta 1e-1, eta_l 1e-1, beta_1 0.9,
    beta_2 0.99, tau 1e-3.
    """

    variant: ClassVar[Variant | None] = "adam"
    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-1, 1e-1, 0.9, 0.99, 1e-3)


class FedYogi(FedOpt):
    """FedYogi: adaptive federated optimization with Yogi (https://arxiv.org/abs/2003.00295v5).

    Takes `FedOpt`'s arguments, with these defaults: eta 1e-2, eta_l 0.0316, beta_1 0.9,
    beta_2 0.99, tau 1e-3.
    """

    variant: ClassVar[Variant | None] = "yogi"
    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-2, 0.0316, 0.9, 0.99, 1e-3)


class FedAdagrad(FedOpt):
    """FedAdagrad: adaptive federated optimization with Adagrad
    (https://arxiv.org/abs/2003.00295v5).

    Takes `FedOpt`'s arguments but `beta_1` and `beta_2`, with these defaults: eta 1e-1,
    eta_l 1e-1, tau 1e-3.
    """

    variant: ClassVar[Variant | None] = "adagrad"
    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-1, 1e-1, 0.0, 0.0, 1e-3)
