"""Differential-privacy kernels: update clipping and Gaussian noise, for both APIs and the mods.

Central DP (Andrew et al., https://arxiv.org/abs/1905.03871; McMahan et al.,
https://arxiv.org/abs/1710.06963): each update w_k - w is scaled to an L2 norm of at most
C, and the aggregate gets N(0, (z C / m)^2) noise for noise multiplier z and m sampled
clients. Norms are summed in float64 and every pass runs in cache-sized blocks, so no
float64 copy of the model exists. Noise comes from a numpy Generator the caller owns:
seed it for reproducible runs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from stamen.common.legacy import NDArrays

__all__ = [
    "CLIENTS_DISCREPANCY_WARNING",
    "KEY_CLIPPING_NORM",
    "KEY_NORM_BIT",
    "adapted_clipping_norm",
    "add_gaussian_noise",
    "clip_update",
    "compute_adaptive_noise_params",
    "compute_stdv",
    "l2_norm",
]

logger = logging.getLogger(__name__)

KEY_CLIPPING_NORM = "clipping_norm"
"""ConfigRecord key under which a client-side-clipping wrapper sends the clipping norm."""
KEY_NORM_BIT = "norm_bit"
"""MetricRecord key under which `adaptiveclipping_mod` reports whether it clipped."""
CLIENTS_DISCREPANCY_WARNING = (
    "The number of clients returning parameters (%s) differs from the number of sampled "
    "clients (%s). This could impact the differential privacy guarantees, potentially "
    "leading to privacy leakage or inadequate noise calibration."
)

_BLOCK = 1 << 15


def l2_norm(arrays: NDArrays, reference: NDArrays | None = None) -> float:
    """The L2 norm of `arrays` (minus `reference`, if given) flattened into one vector."""
    total = 0.0
    for index, array in enumerate(arrays):
        flat = np.ravel(array)
        base = None if reference is None else np.ravel(reference[index])
        buffer = np.empty(min(_BLOCK, flat.size), dtype=_work_dtype(array.dtype))
        for start in range(0, flat.size, _BLOCK):
            stop = min(start + _BLOCK, flat.size)
            block = buffer[: stop - start]
            if base is None:
                np.copyto(block, flat[start:stop], casting="unsafe")
            else:
                np.subtract(flat[start:stop], base[start:stop], out=block, dtype=block.dtype)
            # Squares summed in float64; einsum, not np.dot: a threaded BLAS call per small
            # block stalls on a busy machine.
            total += float(np.einsum("i,i->", block, block, dtype=np.float64))
    return math.sqrt(total)


def clip_update(
    arrays: NDArrays, reference: NDArrays, clipping_norm: float
) -> tuple[NDArrays, bool]:
    """`reference` + the update `arrays - reference` scaled to norm <= `clipping_norm`.

    Returns the arrays (new ones, each in its own dtype, if clipped; else `arrays`
    themselves) and whether the update was clipped. Float arrays are worked on in their
    own precision, as Flower does; others in float64.
    """
    norm = l2_norm(arrays, reference)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    if scale == 1.0:
        return list(arrays), False
    out: NDArrays = []
    for array, base in zip(arrays, reference, strict=True):
        flat, flat_base = np.ravel(array), np.ravel(base)
        result = np.empty(flat.size, dtype=array.dtype)
        step = np.empty(min(_BLOCK, flat.size), dtype=_work_dtype(array.dtype))
        for start in range(0, flat.size, _BLOCK):
            stop = min(start + _BLOCK, flat.size)
            block = step[: stop - start]
            np.subtract(flat[start:stop], flat_base[start:stop], out=block, dtype=block.dtype)
            block *= scale
            block += flat_base[start:stop]
            if array.dtype.kind in "biu":
                np.rint(block, out=block)
            result[start:stop] = block
        out.append(result.reshape(array.shape))
    return out, True


def _work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def add_gaussian_noise(arrays: NDArrays, std_dev: float, rng: np.random.Generator) -> NDArrays:
    """`arrays` plus independent N(0, std_dev^2) noise on every element, in each dtype.

    Writes in place where an array is writeable, else into a copy; returns the arrays.
    """
    out: NDArrays = []
    for array in arrays:
        target = array if array.flags.writeable else np.array(array)
        flat = target.reshape(-1) if target.flags.c_contiguous else None
        if flat is None:
            target = np.ascontiguousarray(target)
            flat = target.reshape(-1)
        noise_dtype = np.float32 if flat.dtype == np.float32 else np.float64
        noise: npt.NDArray[Any] = np.empty(min(_BLOCK, flat.size), dtype=noise_dtype)
        for start in range(0, flat.size, _BLOCK):
            stop = min(start + _BLOCK, flat.size)
            block = noise[: stop - start]
            rng.standard_normal(out=block, dtype=noise_dtype)
            block *= std_dev
            flat[start:stop] += block.astype(flat.dtype, copy=False)
        out.append(target)
    return out


def compute_stdv(noise_multiplier: float, clipping_norm: float, num_sampled_clients: int) -> float:
    """The standard deviation of the aggregate's noise: z C / m."""
    return float(noise_multiplier * clipping_norm / num_sampled_clients)


def compute_adaptive_noise_params(
    noise_multiplier: float, num_sampled_clients: float, clipped_count_stddev: float | None
) -> tuple[float, float]:
    """(clipped-count stddev, noise multiplier for the update) under adaptive clipping.

    Part of the privacy budget goes to the noisy count of clipped updates, so the
    update's noise multiplier grows: z_update = (z^-2 - (2 sigma_b)^-2)^-1/2, with
    sigma_b = m / 20 unless given (Andrew et al.).
    """
    if noise_multiplier <= 0:
        return (0.0 if clipped_count_stddev is None else clipped_count_stddev), 0.0
    if clipped_count_stddev is None:
        clipped_count_stddev = num_sampled_clients / 20
    if noise_multiplier >= 2 * clipped_count_stddev:
        raise ValueError(
            f"If not specified, `clipped_count_stddev` is set to `num_sampled_clients`/20 "
            f"by default. This value ({num_sampled_clients / 20}) is too low to achieve the "
            f"desired effective `noise_multiplier` ({noise_multiplier}). Consider increasing "
            "`clipped_count_stddev` or decreasing `noise_multiplier`."
        )
    value = (noise_multiplier**-2 - (2 * clipped_count_stddev) ** -2) ** -0.5
    if value / noise_multiplier >= 2:
        logger.warning(
            "A significant amount of noise (%s) has to be added. Consider increasing "
            "`clipped_count_stddev` or `num_sampled_clients`.",
            value / noise_multiplier,
        )
    return clipped_count_stddev, value


def adapted_clipping_norm(
    clipping_norm: float,
    clipped: int,
    total: int,
    *,
    clipped_count_stddev: float,
    clip_norm_lr: float,
    target_clipped_quantile: float,
    rng: np.random.Generator,
) -> float:
    """The next clipping norm: C exp(-lr (b - q)), b the noisy fraction of clipped updates."""
    fraction = float(rng.normal(clipped, clipped_count_stddev)) / total
    return clipping_norm * math.exp(-clip_norm_lr * (fraction - target_clipped_quantile))
