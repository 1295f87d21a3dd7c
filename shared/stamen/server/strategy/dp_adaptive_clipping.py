"""Central DP with adaptive clipping for legacy strategies (Andrew et al., 2019).

The clipping norm follows a target quantile of the update norms: after each round it is
multiplied by exp(-lr (b - q)), b being the noisy fraction of clipped updates.
"""

from __future__ import annotations

from stamen.common.errors import AggregationError
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
from .dp import KEY_CLIPPING_NORM, KEY_NORM_BIT
from .dp_wrapper import LegacyDPWrapper
from .strategy import Strategy

__all__ = [
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
]


class _AdaptiveClipping(LegacyDPWrapper):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(strategy, noise_multiplier, num_sampled_clients, seed)
        self._adapt_clipping_norm_from(
            initial_clipping_norm, target_clipped_quantile, clip_norm_lr, clipped_count_stddev
        )


class DifferentialPrivacyServerSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP with adaptive clipping done by the server: clip every update to the
    current norm, adapt the norm, let `strategy` aggregate, add Gaussian noise. A round
    with failures is not aggregated.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0).
    num_sampled_clients : int
        m, the clients sampled each round.
    initial_clipping_norm : float (default: 0.1)
        The clipping norm of the first round.
    target_clipped_quantile : float (default: 0.5)
        The fraction of updates the norm should end up clipping, in [0, 1].
    clip_norm_lr : float (default: 0.2)
        The learning rate of the norm's geometric update.
    clipped_count_stddev : float, optional
        The stddev of the noise on the count of clipped updates; default m / 20.
    seed : int, optional
        Seeds all noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            strategy,
            noise_multiplier,
            num_sampled_clients,
            initial_clipping_norm,
            target_clipped_quantile,
            clip_norm_lr,
            clipped_count_stddev,
            seed=seed,
        )
        self.current_round_params: NDArrays = []

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Adaptive Clipping)"

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
        clipped = self._clip_results(results, self.current_round_params)
        self._adapt(clipped, len(results))
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        if parameters:
            parameters = self._noised_parameters(parameters)
        return parameters, metrics


class DifferentialPrivacyClientSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP with adaptive clipping done by the clients' `adaptiveclipping_mod`:
    adds the current norm to every FitIns config (key "clipping_norm"); each FitRes must
    report "norm_bit" in its metrics. The server lets `strategy` aggregate, adds Gaussian
    noise and adapts the norm. Use with `ClientApp(client_fn=..., mods=[adaptiveclipping_mod])`.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0).
    num_sampled_clients : int
        m, the clients sampled each round.
    initial_clipping_norm : float (default: 0.1)
        The clipping norm of the first round.
    target_clipped_quantile : float (default: 0.5)
        The fraction of updates the norm should end up clipping, in [0, 1].
    clip_norm_lr : float (default: 0.2)
        The learning rate of the norm's geometric update.
    clipped_count_stddev : float, optional
        The stddev of the noise on the count of clipped updates; default m / 20.
    seed : int, optional
        Seeds all noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Adaptive Clipping)"

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
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        clipped = 0
        for proxy, res in results:
            if KEY_NORM_BIT not in res.metrics:
                raise AggregationError(
                    f"{KEY_NORM_BIT} not returned by client with id {proxy.cid}."
                )
            clipped += int(bool(res.metrics[KEY_NORM_BIT]))
        self._adapt(clipped, len(results))
        if parameters:
            parameters = self._noised_parameters(parameters)
        return parameters, metrics
