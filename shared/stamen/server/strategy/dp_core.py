"""The core every central-DP wrapper shares, in both APIs: settings, clipping norm, noise.

The legacy wrappers (`dp_wrapper.LegacyDPWrapper`) and the Message-API ones
(`stamen.serverapp.strategy.dp_base.DifferentialPrivacyWrapper`) differ only in how they
talk to the strategy they wrap; what they check, the clipping norm (fixed, or adapted to
a target quantile each round) and the aggregate's noise live here, once.
"""

from __future__ import annotations

import logging

import numpy as np

from stamen.common.legacy import NDArrays

from .dp import (
    adapted_clipping_norm,
    add_gaussian_noise,
    compute_adaptive_noise_params,
    compute_stdv,
)

__all__ = ["CentralDP"]

logger = logging.getLogger(__name__)


class CentralDP:
    """Noise multiplier z, sampled clients m, clipping norm C and the seeded noise source.

    Call `_fix_clipping_norm` or `_adapt_clipping_norm_from` once after `__init__`.
    """

    def __init__(self, noise_multiplier: float, num_sampled_clients: int, seed: int | None) -> None:
        if noise_multiplier < 0:
            raise ValueError("The noise multiplier should be a non-negative value.")
        if num_sampled_clients <= 0:
            raise ValueError("The number of sampled clients should be a positive value.")
        self.noise_multiplier = noise_multiplier
        self.num_sampled_clients = num_sampled_clients
        self.clipping_norm = 0.0
        self.rng = np.random.default_rng(seed)

    def _fix_clipping_norm(self, clipping_norm: float) -> None:
        if clipping_norm <= 0:
            raise ValueError("The clipping norm should be a positive value.")
        self.clipping_norm = clipping_norm

    def _adapt_clipping_norm_from(
        self,
        initial_clipping_norm: float,
        target_clipped_quantile: float,
        clip_norm_lr: float,
        clipped_count_stddev: float | None,
    ) -> None:
        """Adaptive clipping (Andrew et al.): part of the privacy budget goes to the noisy
        count of clipped updates, so the update's noise multiplier grows."""
        if initial_clipping_norm <= 0:
            raise ValueError("The initial clipping norm should be a positive value.")
        if not 0 <= target_clipped_quantile <= 1:
            raise ValueError("The target clipped quantile must be between 0 and 1 (inclusive).")
        if clip_norm_lr <= 0:
            raise ValueError("The learning rate must be positive.")
        if clipped_count_stddev is not None and clipped_count_stddev < 0:
            raise ValueError("The `clipped_count_stddev` must be non-negative.")
        self.clipping_norm = initial_clipping_norm
        self.target_clipped_quantile = target_clipped_quantile
        self.clip_norm_lr = clip_norm_lr
        self.clipped_count_stddev, self.noise_multiplier = compute_adaptive_noise_params(
            self.noise_multiplier, self.num_sampled_clients, clipped_count_stddev
        )

    def _adapt(self, clipped: int, total: int) -> None:
        """The next round's norm, from how many of `total` updates were clipped."""
        self.clipping_norm = adapted_clipping_norm(
            self.clipping_norm,
            clipped,
            total,
            clipped_count_stddev=self.clipped_count_stddev,
            clip_norm_lr=self.clip_norm_lr,
            target_clipped_quantile=self.target_clipped_quantile,
            rng=self.rng,
        )

    def _noised(self, arrays: NDArrays) -> NDArrays:
        """`arrays` plus N(0, (z C / m)^2) noise on every element."""
        stdv = compute_stdv(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients)
        noisy = add_gaussian_noise(arrays, stdv, self.rng)
        logger.info("aggregate_fit: central DP noise with %.4f stdev added", stdv)
        return noisy
