"""FedTrimmedAvg (Yin et al., 2018): the coordinate-wise trimmed mean of the replies."""

from __future__ import annotations

from collections.abc import Callable

from stamen.common.legacy import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    read_only_ndarrays,
)

from ..client_proxy import ClientProxy
from ._fitmetrics import fit_metrics
from .aggregate import ordered
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn
from .robust import trimmed_mean

__all__ = ["FedTrimmedAvg"]


class FedTrimmedAvg(FedAvg):
    """FedAvg's sampling; the new model is the coordinate-wise trimmed mean of the replies.

    Paper: https://arxiv.org/abs/1803.01498.

    Parameters
    ----------
    beta : float (default: 0.2)
        Fraction cut off each tail of the replies' values at every coordinate, in
        ``[0, 0.5)``; ``int(beta * number of replies)`` values go from each side.
    fraction_fit, fraction_evaluate, min_fit_clients, min_evaluate_clients,
    min_available_clients, evaluate_fn, on_fit_config_fn, on_evaluate_config_fn,
    accept_failures, initial_parameters, fit_metrics_aggregation_fn,
    evaluate_metrics_aggregation_fn
        As for `FedAvg`.
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
        beta: float = 0.2,
    ) -> None:
        if not 0.0 <= beta < 0.5:
            raise ValueError("`beta` must be in the range [0, 0.5).")
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
        self.beta = beta

    def __repr__(self) -> str:
        return f"FedTrimmedAvg(accept_failures={self.accept_failures})"

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        results = ordered(results)
        models = [read_only_ndarrays(res.parameters) for _, res in results]
        aggregated = trimmed_mean(models, self.beta)
        return ndarrays_to_parameters(aggregated), fit_metrics(self, results)
