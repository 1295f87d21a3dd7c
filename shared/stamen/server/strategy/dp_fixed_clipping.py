"""Central DP with a fixed clipping norm for legacy strategies (server- or client-side)."""

from __future__ import annotations

from stamen.common.legacy import (
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    parameters_to_ndarrays,
)

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .dp import KEY_CLIPPING_NORM
from .dp_wrapper import LegacyDPWrapper
from .strategy import Strategy

__all__ = [
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideFixedClipping",
]


class _FixedClipping(LegacyDPWrapper):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(strategy, noise_multiplier, num_sampled_clients, seed)
        self._fix_clipping_norm(clipping_norm)

    def _aggregate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        if parameters:
            parameters = self._noised_parameters(parameters)
        return parameters, metrics


class DifferentialPrivacyServerSideFixedClipping(_FixedClipping):
    """Central DP: the server clips each client's update to `clipping_norm`, lets
    `strategy` aggregate, and adds Gaussian noise N(0, (z C / m)^2) to the aggregate.
    A round with failures is not aggregated.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0); 1.0 or more for strong privacy.
    clipping_norm : float
        C, the L2 norm every client's update is clipped to (> 0).
    num_sampled_clients : int
        m, the clients sampled each round.
    seed : int, optional
        Seeds the noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(strategy, noise_multiplier, clipping_norm, num_sampled_clients, seed=seed)
        self.current_round_params: NDArrays = []

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Fixed Clipping)"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.current_round_params = parameters_to_ndarrays(parameters)
        return self.strategy.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            return None, {}
        self._check_count(results)
        self._clip_results(results, self.current_round_params)
        return self._aggregate(server_round, results, failures)


class DifferentialPrivacyClientSideFixedClipping(_FixedClipping):
    """Central DP with clipping on the clients: adds `clipping_norm` to every FitIns
    config (key "clipping_norm") for `fixedclipping_mod` to clip with, lets `strategy`
    aggregate, and adds Gaussian noise N(0, (z C / m)^2). Use with
    `ClientApp(client_fn=..., mods=[fixedclipping_mod])`.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0); 1.0 or more for strong privacy.
    clipping_norm : float
        C, the L2 norm the clients clip their updates to (> 0).
    num_sampled_clients : int
        m, the clients sampled each round.
    seed : int, optional
        Seeds the noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Fixed Clipping)"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        for _, fit_ins in instructions:
            fit_ins.config[KEY_CLIPPING_NORM] = self.clipping_norm
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            return None, {}
        self._check_count(results)
        return self._aggregate(server_round, results, failures)
