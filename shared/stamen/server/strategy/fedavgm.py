"""FedAvgM: federated averaging with server momentum, legacy API (Hsu et al., 2019).

The server step is `server_opt.MomentumOptimizer`, shared with the Message API.
"""

from __future__ import annotations

from collections.abc import Callable

from stamen.common.errors import AggregationError
from stamen.common.legacy import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn
from .server_opt import MomentumOptimizer

__all__ = ["FedAvgM"]


class FedAvgM(FedAvg):
    """Federated averaging with server momentum (https://arxiv.org/abs/1909.06335).

    With the defaults (learning rate 1.0, momentum 0.0) it is FedAvg. Otherwise each
    round's new model is current - server_learning_rate * momentum_vector, where the
    pseudo-gradient is current - FedAvg's aggregate; `initial_parameters` is then
    required and holds the current global model from round to round.

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
    initial_parameters : Parameters, optional
        The initial global model (required when server optimization is on).
    fit_metrics_aggregation_fn, evaluate_metrics_aggregation_fn : MetricsAggregationFn
        Aggregate the clients' metrics, or None.
    server_learning_rate : float (default: 1.0)
        Server-side learning rate.
    server_momentum : float (default: 0.0)
        Server-side momentum factor.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.0,
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
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.server_opt: bool = server_momentum != 0.0 or server_learning_rate != 1.0
        self.optimizer = MomentumOptimizer(server_learning_rate, server_momentum)

    def __repr__(self) -> str:
        return f"FedAvgM(accept_failures={self.accept_failures})"

    @property
    def momentum_vector(self) -> list[object] | None:
        """The momentum, per array (None before the first round, or without momentum)."""
        vector = self.optimizer.momentum_vector
        return None if vector is None else list(vector)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """The initial model; kept, since it is the current model server momentum steps from."""
        return self.initial_parameters

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """FedAvg's aggregate, then (if server optimization is on) one momentum SGD step."""
        aggregated, metrics = super().aggregate_fit(server_round, results, failures)
        if aggregated is None or not self.server_opt:
            return aggregated, metrics
        if self.initial_parameters is None:
            raise AggregationError(
                "FedAvgM with server_learning_rate != 1.0 or server_momentum != 0.0 needs "
                "the model to start from: pass initial_parameters=..."
            )
        current = parameters_to_ndarrays(self.initial_parameters)
        new = self.optimizer.step(current, parameters_to_ndarrays(aggregated))
        self.initial_parameters = ndarrays_to_parameters(new)
        return self.initial_parameters, metrics
