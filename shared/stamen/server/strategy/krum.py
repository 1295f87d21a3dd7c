"""Krum and MultiKrum (Blanchard et al., 2017): keep the replies closest to the others."""

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
from .aggregate import aggregate_krum, ordered
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn

__all__ = ["Krum"]


class Krum(FedAvg):
    """FedAvg's sampling; the new model is the reply with the lowest Krum score.

    A reply's score is the sum of its squared distances to its n - f - 2 nearest other
    replies (n replies, f malicious). Paper: https://arxiv.org/abs/1703.02757.

    Parameters
    ----------
    num_malicious_clients : int (default: 0)
        f, the number of malicious clients assumed.
    num_clients_to_keep : int (default: 0)
        0 for Krum; k > 0 for MultiKrum: the example-weighted average of the k replies
        with the lowest scores.
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
        num_malicious_clients: int = 0,
        num_clients_to_keep: int = 0,
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
        self.num_malicious_clients = num_malicious_clients
        self.num_clients_to_keep = num_clients_to_keep

    def __repr__(self) -> str:
        return f"Krum(accept_failures={self.accept_failures})"

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        results = ordered(results)
        weighted = [(read_only_ndarrays(res.parameters), res.num_examples) for _, res in results]
        aggregated = aggregate_krum(weighted, self.num_malicious_clients, self.num_clients_to_keep)
        return ndarrays_to_parameters(aggregated), fit_metrics(self, results)
