"""FedXgbBagging, legacy API: federated XGBoost by bagging the clients' new trees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stamen.common.legacy import EvaluateRes, FitRes, Parameters, Scalar

from ..client_proxy import ClientProxy
from .aggregate import ordered
from .fedavg import FedAvg
from .xgb import aggregate_bagging

__all__ = ["FedXgbBagging"]

EvaluateFunction = Callable[
    [int, Parameters, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None
]


class FedXgbBagging(FedAvg):
    """Each round, the trees every client grew are appended to the global XGBoost model.

    Models travel as xgboost's JSON bytes in `Parameters.tensors` (tensor_type "").

    Parameters
    ----------
    evaluate_function : Callable[[int, Parameters, dict], tuple[float, dict] | None], optional
        Centralized evaluation on the raw model bytes.
    **kwargs
        FedAvg's arguments (`fraction_fit`, `min_fit_clients`, ...).
    """

    def __init__(self, evaluate_function: EvaluateFunction | None = None, **kwargs: Any) -> None:
        self.evaluate_function = evaluate_function
        self.global_model: bytes | None = None
        super().__init__(**kwargs)

    def __repr__(self) -> str:
        return f"FedXgbBagging(accept_failures={self.accept_failures})"

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        global_model = self.global_model
        for _, res in ordered(results):
            for bst in res.parameters.tensors:
                global_model = aggregate_bagging(global_model, bst)
        self.global_model = global_model
        return Parameters(tensor_type="", tensors=[global_model or b""]), {}

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return xgb_aggregate_evaluate(self, results, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_function is None:
            return None
        return self.evaluate_function(server_round, parameters, {})


def xgb_aggregate_evaluate(
    strategy: FedAvg,
    results: list[tuple[ClientProxy, EvaluateRes]],
    failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
) -> tuple[float | None, dict[str, Scalar]]:
    """Loss 0 (trees have no federated loss) and the aggregated evaluation metrics."""
    if not results or (failures and not strategy.accept_failures):
        return None, {}
    if strategy.evaluate_metrics_aggregation_fn is None:
        strategy._warn_once("No evaluate_metrics_aggregation_fn provided")
        return 0, {}
    metrics = [(res.num_examples, res.metrics) for _, res in ordered(results)]
    return 0, strategy.evaluate_metrics_aggregation_fn(metrics)
