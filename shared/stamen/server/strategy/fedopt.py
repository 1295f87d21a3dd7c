"""FedOpt and its adaptive variants (FedAdam, FedYogi, FedAdagrad), legacy API.

Each round, FedAvg's aggregate minus the current global model is a pseudo-gradient that a
server optimizer (`server_opt.AdaptiveOptimizer`, shared with the Message API) applies.
Flower's arguments and defaults; `initial_parameters` is required, since the update
needs the model it starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from stamen.common.legacy import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from ..client_proxy import ClientProxy
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn
from .fedopt_base import FedOptArguments, OptimizerDefaults
from .server_opt import Variant

__all__ = ["FedAdagrad", "FedAdam", "FedOpt", "FedYogi"]

ConfigFn = Callable[[int], dict[str, Scalar]]


class FedOpt(FedOptArguments, FedAvg):
    """Federated optimization (Reddi et al., https://arxiv.org/abs/2003.00295v5): the base of
    FedAdam, FedYogi and FedAdagrad. On its own it aggregates as FedAvg and keeps the
    current model in `current_weights`.

    Parameters
    ----------
    fraction_fit : float (default: 1.0)
        Fraction of the available clients sampled for training.
    fraction_evaluate : float (default: 1.0)
        Fraction of the available clients sampled for evaluation.
    min_fit_clients : int (default: 2)
        Minimum number of clients sampled for training.
    min_evaluate_clients : int (default: 2)
        Minimum number of clients sampled for evaluation.
    min_available_clients : int (default: 2)
        Minimum number of clients connected before a round starts.
    evaluate_fn : Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict] | None]
        Centralized evaluation of the global model, or None.
    on_fit_config_fn, on_evaluate_config_fn : Callable[[int], dict[str, Scalar]]
        The config sent with each round's training / evaluation instructions.
    accept_failures : bool (default: True)
        Whether a round with failures is still aggregated.
    initial_parameters : Parameters
        The initial global model (required).
    fit_metrics_aggregation_fn, evaluate_metrics_aggregation_fn : MetricsAggregationFn
        Aggregate the clients' metrics, or None.
    eta : float (FedOpt's default: 1e-1)
        Server-side learning rate.
    eta_l : float (FedOpt's default: 1e-1)
        Client-side learning rate (kept for the clients' configuration; unused here).
    beta_1 : float (FedOpt's default: 0.0)
        Momentum parameter.
    beta_2 : float (FedOpt's default: 0.0)
        Second moment parameter.
    tau : float (FedOpt's default: 1e-9)
        Controls the algorithm's degree of adaptability.

    The optimizer's arguments left at None take the class's defaults (FedAdam's, FedYogi's
    and FedAdagrad's differ; each lists its own).
    """

    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-1, 1e-1, 0.0, 0.0, 1e-9)

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: ConfigFn | None = None,
        on_evaluate_config_fn: ConfigFn | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        eta: float | None = None,
        eta_l: float | None = None,
        beta_1: float | None = None,
        beta_2: float | None = None,
        tau: float | None = None,
    ) -> None:
        super().__init__(
            fraction_fit=fraction_fit,
            fraction_evaluate=fraction_evaluate,
            min_fit_clients=min_fit_clients,
            min_evaluate_clients=min_evaluate_clients,
            min_available_clients=min_available_clients,
            evaluate_fn=evaluate_fn,
            on_fit_config_fn=on_fit_config_fn,
            on_evaluate_config_fn=on_evaluate_config_fn,
            accept_failures=accept_failures,
            initial_parameters=initial_parameters,
            fit_metrics_aggregation_fn=fit_metrics_aggregation_fn,
            evaluate_metrics_aggregation_fn=evaluate_metrics_aggregation_fn,
        )
        self.current_weights = parameters_to_ndarrays(initial_parameters)
        self._set_optimizer(eta, eta_l, beta_1, beta_2, tau)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    @property
    def m_t(self) -> list[Any] | None:
        """The first moment, per array (None before the first round)."""
        return None if self.optimizer is None else self.optimizer.m_t

    @property
    def v_t(self) -> list[Any] | None:
        """The second moment, per array (None before the first round)."""
        return None if self.optimizer is None else self.optimizer.v_t

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """FedAvg's aggregate, then one step of the server optimizer from the current model."""
        aggregated, metrics = super().aggregate_fit(server_round, results, failures)
        if aggregated is None:
            return None, {}
        if self.optimizer is None:
            self.current_weights = parameters_to_ndarrays(aggregated)
            return aggregated, metrics
        self.current_weights = self.optimizer.step(
            self.current_weights, parameters_to_ndarrays(aggregated), server_round, in_place=True
        )
        return ndarrays_to_parameters(self.current_weights), metrics


class FedAdam(FedOpt):
    """FedAdam: adaptive federated optimization with Adam (https://arxiv.org/abs/2003.00295v5).

    Takes `FedOpt`'s arguments, with these defaults: eta 1e-1, eta_l 1e-1, beta_1 0.9,
    beta_2 0.99, tau 1e-9.
    """

    variant: ClassVar[Variant | None] = "adam"
    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-1, 1e-1, 0.9, 0.99, 1e-9)


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
    eta_l 1e-1, tau 1e-9.
    """

    variant: ClassVar[Variant | None] = "adagrad"
    defaults: ClassVar[OptimizerDefaults] = OptimizerDefaults(1e-1, 1e-1, 0.0, 0.0, 1e-9)
