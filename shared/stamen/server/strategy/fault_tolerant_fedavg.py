"""FaultTolerantFedAvg, legacy API: FedAvg that skips a round with too few results."""

from __future__ import annotations

from collections.abc import Callable

from stamen.common.legacy import EvaluateRes, FitRes, Parameters, Scalar

from ..client_proxy import ClientProxy
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn

__all__ = ["FaultTolerantFedAvg"]


class FaultTolerantFedAvg(FedAvg):
    """FedAvg that always accepts failures, but aggregates a round only if at least a
    given fraction of the sampled clients replied.

    Parameters
    ----------
    fraction_fit : float (default: 1.0)
        Fraction of the available clients sampled for training.
    fraction_evaluate : float (default: 1.0)
        Fraction of the available clients sampled for evaluation.
    min_fit_clients : int (default: 1)
        Minimum number of clients sampled for training.
    min_evaluate_clients : int (default: 1)
        Minimum number of clients sampled for evaluation.
    min_available_clients : int (default: 1)
        Minimum number of clients connected before a round starts.
    evaluate_fn : Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict] | None]
        Centralized evaluation of the global model, or None.
    on_fit_config_fn, on_evaluate_config_fn : Callable[[int], dict[str, Scalar]]
        The config sent with each round's training / evaluation instructions.
    min_completion_rate_fit : float (default: 0.5)
        Results / (results + failures) below which a training round keeps the old model.
    min_completion_rate_evaluate : float (default: 0.5)
        The same for evaluation: below it, the round records no loss.
    initial_parameters : Parameters, optional
        The initial global model.
    fit_metrics_aggregation_fn, evaluate_metrics_aggregation_fn : MetricsAggregationFn
        Aggregate the clients' metrics, or None.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 1,
        min_evaluate_clients: int = 1,
        min_available_clients: int = 1,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        min_completion_rate_fit: float = 0.5,
        min_completion_rate_evaluate: float = 0.5,
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
            accept_failures=True,
            initial_parameters=initial_parameters,
            fit_metrics_aggregation_fn=fit_metrics_aggregation_fn,
            evaluate_metrics_aggregation_fn=evaluate_metrics_aggregation_fn,
        )
        self.completion_rate_fit = min_completion_rate_fit
        self.completion_rate_evaluate = min_completion_rate_evaluate

    def __repr__(self) -> str:
        return "FaultTolerantFedAvg()"

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """FedAvg's aggregate, or nothing if too few of the sampled clients replied."""
        if not results or len(results) / (len(results) + len(failures)) < self.completion_rate_fit:
            return None, {}
        return super().aggregate_fit(server_round, results, failures)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """FedAvg's weighted loss, or nothing if too few of the sampled clients replied."""
        completion = len(results) / max(len(results) + len(failures), 1)
        if not results or completion < self.completion_rate_evaluate:
            return None, {}
        return super().aggregate_evaluate(server_round, results, failures)
