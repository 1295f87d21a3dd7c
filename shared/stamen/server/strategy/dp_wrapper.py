"""What the legacy DP strategy wrappers share: delegation, clipping results, noise."""

from __future__ import annotations

import logging

from stamen.common.legacy import (
    EvaluateIns,
    EvaluateRes,
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
from .dp import CLIENTS_DISCREPANCY_WARNING, clip_update
from .dp_core import CentralDP
from .strategy import Strategy

__all__ = ["LegacyDPWrapper"]

logger = logging.getLogger(__name__)


class LegacyDPWrapper(CentralDP, Strategy):
    """Wraps `strategy`: everything but training aggregation is delegated to it."""

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        seed: int | None,
    ) -> None:
        super().__init__(noise_multiplier, num_sampled_clients, seed)
        self.strategy = strategy

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)

    def _check_count(self, results: list[tuple[ClientProxy, FitRes]]) -> None:
        if len(results) != self.num_sampled_clients:
            logger.warning(CLIENTS_DISCREPANCY_WARNING, len(results), self.num_sampled_clients)

    def _clip_results(self, results: list[tuple[ClientProxy, FitRes]], current: NDArrays) -> int:
        """Clip every result's update in place of its parameters; how many were clipped."""
        clipped_count = 0
        for _, res in results:
            arrays, was_clipped = clip_update(
                read_only_ndarrays(res.parameters), current, self.clipping_norm
            )
            res.parameters = ndarrays_to_parameters(arrays)
            clipped_count += int(was_clipped)
            logger.info("aggregate_fit: parameters are clipped by value: %.4f.", self.clipping_norm)
        return clipped_count

    def _noised_parameters(self, parameters: Parameters) -> Parameters:
        return ndarrays_to_parameters(self._noised(parameters_to_ndarrays(parameters)))
