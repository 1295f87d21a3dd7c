"""FedXgbCyclic, legacy API: one client at a time boosts the global XGBoost model."""

from __future__ import annotations

from typing import Any

from stamen.common.legacy import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .fedavg import FedAvg
from .fedxgb_bagging import xgb_aggregate_evaluate

__all__ = ["FedXgbCyclic"]


class FedXgbCyclic(FedAvg):
    """Round r sends the model to the ((r - 1) mod n)-th sampled client, in
    (partition id, node id) order, and its reply becomes the global model.

    Models travel as xgboost's JSON bytes in `Parameters.tensors` (tensor_type "").
    Takes FedAvg's arguments (`fraction_fit`, `min_fit_clients`, ...) as keywords.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.global_model: bytes | None = None
        super().__init__(**kwargs)

    def __repr__(self) -> str:
        return f"FedXgbCyclic(accept_failures={self.accept_failures})"

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        for _, res in results:
            for bst in res.parameters.tensors:
                self.global_model = bst
        return Parameters(tensor_type="", tensors=[self.global_model or b""]), {}

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return xgb_aggregate_evaluate(self, results, failures)

    def _one(self, server_round: int, clients: list[ClientProxy]) -> list[ClientProxy]:
        if not clients:
            return []
        ranked = sorted(clients, key=lambda proxy: proxy.order_key)
        return [ranked[(server_round - 1) % len(ranked)]]

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        config = {} if self.on_fit_config_fn is None else self.on_fit_config_fn(server_round)
        sample_size, min_num_clients = self.num_fit_clients(client_manager.num_available())
        clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num_clients)
        return [(client, FitIns(parameters, config)) for client in self._one(server_round, clients)]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if self.fraction_evaluate == 0.0:
            return []
        config = (
            {} if self.on_evaluate_config_fn is None else self.on_evaluate_config_fn(server_round)
        )
        sample_size, min_num_clients = self.num_evaluation_clients(client_manager.num_available())
        clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num_clients)
        instructions = EvaluateIns(parameters, config)
        return [(client, instructions) for client in self._one(server_round, clients)]
