"""FedAvg: federated averaging with Flower's parameters and semantics.

Differences that only make results reproducible: fit results are averaged in
(partition id, node id) order with a float64 running sum, and metrics aggregation
functions see results in that order too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stamen.common.legacy import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .aggregate import aggregate_inplace, ordered, weighted_loss_avg
from .strategy import Strategy

__all__ = ["EvaluateFn", "FedAvg", "MetricsAggregationFn"]

logger = logging.getLogger(__name__)

EvaluateFn = Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None]
MetricsAggregationFn = Callable[[list[tuple[int, dict[str, Scalar]]]], dict[str, Scalar]]

WARNING_MIN_AVAILABLE_CLIENTS_TOO_LOW = (
    "Setting `min_available_clients` lower than `min_fit_clients` or `min_evaluate_clients` "
    "can cause the server to fail when there are too few clients connected to the server. "
    "`min_available_clients` must be set to a value larger than or equal to the values of "
    "`min_fit_clients` and `min_evaluate_clients`."
)


class FedAvg(Strategy):
    """Sample a fraction of the nodes, average their models weighted by example counts.

    `inplace` is accepted for compatibility: aggregation always streams the results.
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
        inplace: bool = True,
    ) -> None:
        super().__init__()
        if min_fit_clients > min_available_clients or min_evaluate_clients > min_available_clients:
            logger.warning(WARNING_MIN_AVAILABLE_CLIENTS_TOO_LOW)
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.evaluate_fn = evaluate_fn
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn
        self.accept_failures = accept_failures
        self.initial_parameters = initial_parameters
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self.inplace = inplace
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"FedAvg(accept_failures={self.accept_failures})"

    def num_fit_clients(self, num_available_clients: int) -> tuple[int, int]:
        """How many nodes to sample for training, and how many must be available."""
        num_clients = int(num_available_clients * self.fraction_fit)
        return max(num_clients, self.min_fit_clients), self.min_available_clients

    def num_evaluation_clients(self, num_available_clients: int) -> tuple[int, int]:
        """How many nodes to sample for evaluation, and how many must be available."""
        num_clients = int(num_available_clients * self.fraction_evaluate)
        return max(num_clients, self.min_evaluate_clients), self.min_available_clients

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        initial_parameters = self.initial_parameters
        self.initial_parameters = None  # the loop owns the model from here on
        return initial_parameters

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        result = self.evaluate_fn(server_round, parameters_to_ndarrays(parameters), {})
        if result is None:
            return None
        loss, metrics = result
        return loss, metrics

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        config = {} if self.on_fit_config_fn is None else self.on_fit_config_fn(server_round)
        fit_ins = FitIns(parameters, config)
        sample_size, min_num_clients = self.num_fit_clients(client_manager.num_available())
        clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num_clients)
        return [(client, fit_ins) for client in clients]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if self.fraction_evaluate == 0.0:
            return []
        config = (
            {} if self.on_evaluate_config_fn is None else self.on_evaluate_config_fn(server_round)
        )
        evaluate_ins = EvaluateIns(parameters, config)
        sample_size, min_num_clients = self.num_evaluation_clients(client_manager.num_available())
        clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num_clients)
        return [(client, evaluate_ins) for client in clients]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        parameters = ndarrays_to_parameters(aggregate_inplace(results))
        metrics: dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn is not None:
            fit_metrics = [(res.num_examples, res.metrics) for _, res in ordered(results)]
            metrics = self.fit_metrics_aggregation_fn(fit_metrics)
        else:
            self._warn_once("No fit_metrics_aggregation_fn provided")
        return parameters, metrics

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        loss = weighted_loss_avg((res.num_examples, res.loss) for _, res in results)
        metrics: dict[str, Scalar] = {}
        if self.evaluate_metrics_aggregation_fn is not None:
            eval_metrics = [(res.num_examples, res.metrics) for _, res in ordered(results)]
            metrics = self.evaluate_metrics_aggregation_fn(eval_metrics)
        else:
            self._warn_once("No evaluate_metrics_aggregation_fn provided")
        return loss, metrics

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            logger.warning(text)
