"""DPFedAvgFixed and DPFedAvgAdaptive: Flower's older (deprecated) DP wrappers.

The clients clip (their app reads "dpfedavg_clip_norm" from the fit config); the server
adds N(0, (z C)^2 / m) noise to every result and averages them unweighted. Prefer the
`DifferentialPrivacy*Clipping` wrappers.
"""

from __future__ import annotations

import logging

import numpy as np

from stamen.common.legacy import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .dp import adapted_clipping_norm, add_gaussian_noise
from .strategy import Strategy

__all__ = ["DPFedAvgAdaptive", "DPFedAvgFixed"]

logger = logging.getLogger(__name__)


def _deprecated(name: str) -> None:
    logger.warning(
        "DEPRECATED FEATURE: %s. This is a deprecated feature. It will be removed entirely "
        "in future versions of Flower.",
        name,
    )


class DPFedAvgFixed(Strategy):
    """DP-FedAvg with a fixed clipping norm (deprecated, as in Flower).

    Parameters
    ----------
    strategy : Strategy
        The strategy that aggregates the noised results (usually FedAvg).
    num_sampled_clients : int
        m, the clients sampled each round.
    clip_norm : float
        C, the norm the clients clip their updates to (> 0), sent as "dpfedavg_clip_norm".
    noise_multiplier : float (default: 1)
        z (>= 0); each result gets noise of stddev z C / sqrt(m).
    server_side_noising : bool (default: True)
        If False, the noise stddev is also sent to the clients ("dpfedavg_noise_stddev").
    seed : int, optional
        Seeds the noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        strategy: Strategy,
        num_sampled_clients: int,
        clip_norm: float,
        noise_multiplier: float = 1,
        server_side_noising: bool = True,
        *,
        seed: int | None = None,
    ) -> None:
        _deprecated("`DPFedAvgFixed` wrapper")
        if clip_norm <= 0:
            raise ValueError("The clipping threshold should be a positive value.")
        if noise_multiplier < 0:
            raise ValueError("The noise multiplier should be a non-negative value.")
        self.strategy = strategy
        self.num_sampled_clients = num_sampled_clients
        self.clip_norm = clip_norm
        self.noise_multiplier = noise_multiplier
        self.server_side_noising = server_side_noising
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return "Strategy with DP with Fixed Clipping enabled."

    def _calc_client_noise_stddev(self) -> float:
        return float(self.noise_multiplier * self.clip_norm / (self.num_sampled_clients**0.5))

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        extra: dict[str, Scalar] = {"dpfedavg_clip_norm": self.clip_norm}
        if not self.server_side_noising:
            extra["dpfedavg_noise_stddev"] = self._calc_client_noise_stddev()
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        for _, fit_ins in instructions:
            fit_ins.config.update(extra)
        return instructions

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            return None, {}
        stddev = self._calc_client_noise_stddev()
        for _, res in results:
            res.num_examples = 1
            noisy = add_gaussian_noise(parameters_to_ndarrays(res.parameters), stddev, self.rng)
            res.parameters = ndarrays_to_parameters(noisy)
        return self.strategy.aggregate_fit(server_round, results, failures)

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


class DPFedAvgAdaptive(DPFedAvgFixed):
    """DP-FedAvg with an adaptive clipping norm (deprecated, as in Flower).

    The clients report "dpfedavg_norm_bit" (whether they clipped) in their fit metrics;
    the norm then moves by exp(-lr (b - q)) with b the noisy fraction of clipped updates.

    Parameters
    ----------
    strategy : Strategy
        The strategy that aggregates the noised results (usually FedAvg).
    num_sampled_clients : int
        m, the clients sampled each round.
    init_clip_norm : float (default: 0.1)
        The first round's clipping norm.
    noise_multiplier : float (default: 1.0)
        z (>= 0), before the share spent on the clipped count.
    server_side_noising : bool (default: True)
        As for `DPFedAvgFixed`.
    clip_norm_lr : float (default: 0.2)
        The learning rate of the norm's geometric update.
    clip_norm_target_quantile : float (default: 0.5)
        The fraction of updates the norm should end up clipping.
    clip_count_stddev : float, optional
        The stddev of the noise on the clipped count; default m / 20 (0 without noise).
    seed : int, optional
        Seeds all noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        strategy: Strategy,
        num_sampled_clients: int,
        init_clip_norm: float = 0.1,
        noise_multiplier: float = 1.0,
        server_side_noising: bool = True,
        clip_norm_lr: float = 0.2,
        clip_norm_target_quantile: float = 0.5,
        clip_count_stddev: float | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            strategy,
            num_sampled_clients,
            init_clip_norm,
            noise_multiplier,
            server_side_noising,
            seed=seed,
        )
        _deprecated("`DPFedAvgAdaptive` wrapper")
        self.clip_norm_lr = clip_norm_lr
        self.clip_norm_target_quantile = clip_norm_target_quantile
        if clip_count_stddev is None:
            clip_count_stddev = num_sampled_clients / 20.0 if noise_multiplier > 0 else 0.0
        self.clip_count_stddev = clip_count_stddev
        if noise_multiplier:
            self.noise_multiplier = (
                self.noise_multiplier**-2 - (2 * self.clip_count_stddev) ** -2
            ) ** -0.5

    def __repr__(self) -> str:
        return "Strategy with DP with Adaptive Clipping enabled."

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        instructions = super().configure_fit(server_round, parameters, client_manager)
        for _, fit_ins in instructions:
            fit_ins.config["dpfedavg_adaptive_clip_enabled"] = True
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            return None, {}
        new_global_model = super().aggregate_fit(server_round, results, failures)
        clipped = 0
        for proxy, res in results:
            if "dpfedavg_norm_bit" not in res.metrics:
                raise KeyError(f"Indicator bit not returned by client with id {proxy.cid}.")
            clipped += int(bool(res.metrics["dpfedavg_norm_bit"]))
        self.clip_norm = adapted_clipping_norm(
            self.clip_norm,
            clipped,
            len(results),
            clipped_count_stddev=self.clip_count_stddev,
            clip_norm_lr=self.clip_norm_lr,
            target_clipped_quantile=self.clip_norm_target_quantile,
            rng=self.rng,
        )
        return new_global_model
