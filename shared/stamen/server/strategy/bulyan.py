"""Bulyan (El Mhamdi et al., 2018): Krum selection, then a trimmed mean around the median."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stamen.common.legacy import (
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    read_only_ndarrays,
)

from ..client_proxy import ClientProxy
from ._fitmetrics import fit_metrics
from .aggregate import aggregate_bulyan, aggregate_krum, ordered
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn

__all__ = ["Bulyan"]


class Bulyan(FedAvg):
    """FedAvg's sampling; Bulyan aggregation, robust to f malicious clients out of n.

    Repeated Krum picks theta = n - 2f replies; per coordinate, the new value is the mean
    of the beta = theta - 2f selected values closest to their median. Needs n >= 4f + 3
    (a round with fewer results raises ValueError, as in Flower).
    Paper: https://arxiv.org/abs/1802.07927.

    Parameters
    ----------
    num_malicious_clients : int (default: 0)
        f, the number of malicious clients assumed.
    first_aggregation_rule : callable (default: `aggregate_krum`)
        The Byzantine-resilient selection rule; Krum is the only one available.
    **aggregation_rule_kwargs
        Arguments for the selection rule (Krum's `to_keep` must be 0).
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
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        first_aggregation_rule: Callable[..., NDArrays] = aggregate_krum,
        **aggregation_rule_kwargs: Any,
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
        self.first_aggregation_rule = first_aggregation_rule
        self.aggregation_rule_kwargs = aggregation_rule_kwargs

    def __repr__(self) -> str:
        return f"Bulyan(accept_failures={self.accept_failures})"

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
        aggregated = aggregate_bulyan(
            weighted,
            self.num_malicious_clients,
            self.first_aggregation_rule,
            **self.aggregation_rule_kwargs,
        )
        return ndarrays_to_parameters(aggregated), fit_metrics(self, results)
