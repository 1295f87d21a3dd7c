"""QFedAvg (Li et al., 2020): q-fair federated averaging, the legacy interface."""

from __future__ import annotations

from collections.abc import Callable

from stamen.common.errors import AggregationError
from stamen.common.legacy import (
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    read_only_ndarrays,
)

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from ._fitmetrics import fit_metrics
from .aggregate import ordered
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn
from .qffl import qffl_update

__all__ = ["QFedAvg"]


class QFedAvg(FedAvg):
    """q-FedAvg: replies from nodes where the model does worse weigh more.

    As in Flower's legacy QFedAvg, the loss that weights every reply is the centralized
    loss of the round's starting model, so `evaluate_fn` is required.
    Paper: https://openreview.net/pdf?id=ByexElSYDr.

    Parameters
    ----------
    q_param : float (default: 0.2)
        q, the fairness exponent; 0 makes the update FedAvg's.
    qffl_learning_rate : float (default: 0.1)
        The clients' learning rate; 1 / it estimates the Lipschitz constant.
    min_fit_clients, min_evaluate_clients, min_available_clients : int (default: 1)
        As for `FedAvg`, with other defaults.
    fraction_fit, fraction_evaluate, evaluate_fn, on_fit_config_fn, on_evaluate_config_fn,
    accept_failures, initial_parameters, fit_metrics_aggregation_fn,
    evaluate_metrics_aggregation_fn
        As for `FedAvg`.
    """

    def __init__(
        self,
        *,
        q_param: float = 0.2,
        qffl_learning_rate: float = 0.1,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 1,
        min_evaluate_clients: int = 1,
        min_available_clients: int = 1,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
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
        self.learning_rate = qffl_learning_rate
        self.q_param = q_param
        self.pre_weights: NDArrays | None = None

    def __repr__(self) -> str:
        return f"QffedAvg(learning_rate={self.learning_rate}, q_param={self.q_param})"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.pre_weights = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        if self.pre_weights is None:
            raise AggregationError("QFedAvg: configure_fit must run before aggregate_fit")
        evaluated = self.evaluate(server_round, ndarrays_to_parameters(self.pre_weights))
        if evaluated is None:
            raise AggregationError(
                "QFedAvg weights replies by the global model's loss: pass an evaluate_fn "
                "that returns (loss, metrics)"
            )
        loss = evaluated[0]
        results = ordered(results)
        replies = [(read_only_ndarrays(res.parameters), loss) for _, res in results]
        aggregated = qffl_update(self.pre_weights, replies, self.q_param, 1.0 / self.learning_rate)
        return ndarrays_to_parameters(aggregated), fit_metrics(self, results)
