"""Quantization of a model update into one flat vector, and its masking arithmetic.

A node's update becomes one uint32 vector: entry 0 is its quantized weight, the rest its
weighted parameters, clipped to [-clipping_range, clipping_range] and mapped with
stochastic rounding onto [0, target_range]. Masks add modulo `mod_range` (a power of 2
no larger than 2**32), so uint32 wrap-around followed by `& (mod_range - 1)` is exact.
The math is Flower's, so the same settings give the same precision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["dequantize_sum", "quantize_update", "reduce"]

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.uint32]


def quantize_update(
    arrays: Sequence[npt.NDArray[Any]],
    num_examples: int,
    *,
    max_weight: float,
    clipping_range: float,
    target_range: int,
) -> Vector:
    """[quantized weight, quantized weighted parameters...] as one uint32 vector."""
    ratio = num_examples / max_weight
    if ratio > 1:
        logger.warning(
            "Potential overflow warning: the provided weight (%s) exceeds the specified "
            "max_weight (%s). This may lead to overflow issues.",
            num_examples,
            max_weight,
        )
    q_ratio = round(ratio * target_range)
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays] or [np.zeros(0)])
    flat *= q_ratio / target_range
    np.clip(flat, -clipping_range, clipping_range, out=flat)
    flat += clipping_range
    flat *= target_range / (2 * clipping_range)
    rounded = np.ceil(flat)
    rounded -= np.random.default_rng().random(flat.shape) < rounded - flat  # stochastic
    out = np.empty(flat.size + 1, np.uint32)
    out[0] = q_ratio
    out[1:] = rounded
    return out


def reduce(vector: Vector, mod_range: int) -> Vector:
    """`vector` modulo `mod_range`, in place."""
    vector &= np.uint32(mod_range - 1)
    return vector


def dequantize_sum(
    total: Vector,
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[np.dtype[Any]],
    *,
    num_summed: int,
    clipping_range: float,
    target_range: int,
) -> list[npt.NDArray[Any]]:
    """The weighted average behind the unmasked sum of `num_summed` quantized updates."""
    q_total = int(total[0])
    if q_total == 0:
        raise ValueError("the summed weight is 0: no update to average")
    values = total[1:].astype(np.float64)
    values *= 2 * clipping_range / target_range
    values -= num_summed * clipping_range
    values *= target_range / q_total
    arrays, offset = [], 0
    for shape, dtype in zip(shapes, dtypes, strict=True):
        size = int(np.prod(shape, dtype=np.int64))
        arrays.append(values[offset : offset + size].reshape(shape).astype(dtype))
        offset += size
    return arrays
