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
_CHUNK = 1 << 16
"""Entries per step: the float64 scratch stays in cache and is allocated once per update."""


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
    scale = q_ratio / target_range
    levels = target_range / (2 * clipping_range)
    size = sum(int(np.size(a)) for a in arrays)
    out = np.empty(size + 1, np.uint32)
    out[0] = q_ratio
    rng = np.random.default_rng()
    buffer, floors = np.empty(_CHUNK), np.empty(_CHUNK)
    uniform = np.empty(_CHUNK, np.float32)  # 2**-24 resolution is plenty, and 2x faster
    offset = 1
    for array in arrays:
        flat = np.asarray(array).reshape(-1)
        for start in range(0, flat.size, _CHUNK):
            part = flat[start : start + _CHUNK]
            value, floor, draw = buffer[: part.size], floors[: part.size], out[offset:][: part.size]
            np.multiply(part, scale, out=value)
            np.clip(value, -clipping_range, clipping_range, out=value)
            value += clipping_range
            value *= levels
            np.floor(value, out=floor)
            draw[:] = floor
            value -= floor  # the fraction: round up with that probability (stochastic)
            noise = uniform[: part.size]
            rng.random(out=noise, dtype=np.float32)
            draw += noise < value
            offset += part.size
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
