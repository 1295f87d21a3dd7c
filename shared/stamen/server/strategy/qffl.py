"""The q-FFL update (q-FedAvg, Li et al. 2020), one kernel for both strategy APIs.

With L the Lipschitz estimate (1 / client learning rate), reply k's gradient estimate is
g_k = L (w - w_k), its weight on the update loss_k^q, and its share of the step size
h_k = q loss_k^(q-1) ||g_k||^2 + L loss_k^q. The new model is
w - sum_k(loss_k^q g_k) / sum_k(h_k).

Two passes over the replies, both in cache-sized float64 blocks: first each ||g_k||^2
(sum_k h_k must be known before any coordinate is final), then the update, written once
in each array's dtype. No model-sized temporary exists per reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from stamen.common.errors import AggregationError
from stamen.common.legacy import NDArrays

__all__ = ["qffl_update"]

_BLOCK = 1 << 15
_EPSILON = 1e-10
"""Added to each loss before taking powers, as the reference implementation does."""


def qffl_update(
    global_arrays: NDArrays,
    replies: Sequence[tuple[NDArrays, float]],
    q: float,
    lipschitz: float,
) -> NDArrays:
    """The next global model from `replies`, each (local arrays, training loss)."""
    if not replies:
        raise AggregationError("cannot aggregate parameters: there are no results")
    for position, (local, _) in enumerate(replies):
        if len(local) != len(global_arrays) or any(
            a.shape != g.shape for a, g in zip(local, global_arrays, strict=True)
        ):
            raise AggregationError(
                f"result {position} does not have the shapes of the global model's arrays"
            )
    powers = [float(np.float_power(loss + _EPSILON, q)) for _, loss in replies]
    total_h = 0.0
    for (local, loss), power in zip(replies, powers, strict=True):
        squared = lipschitz * lipschitz * _squared_distance(global_arrays, local)
        total_h += q * float(np.float_power(loss + _EPSILON, q - 1)) * squared
        total_h += lipschitz * power
    if total_h == 0.0:
        raise AggregationError("cannot aggregate parameters: q-FFL's step size is zero")
    factors = [lipschitz * power / total_h for power in powers]
    return [
        _updated(g, [local[i] for local, _ in replies], factors)
        for i, g in enumerate(global_arrays)
    ]


def _squared_distance(a: NDArrays, b: NDArrays) -> float:
    total = 0.0
    buffer = np.empty(_BLOCK, dtype=np.float64)
    for x, y in zip(a, b, strict=True):
        fx, fy = np.ravel(x), np.ravel(y)
        for start in range(0, fx.size, _BLOCK):
            stop = min(start + _BLOCK, fx.size)
            diff = buffer[: stop - start]
            np.subtract(fx[start:stop], fy[start:stop], out=diff, dtype=np.float64)
            # einsum, not np.dot: a threaded BLAS call per small block stalls on a busy machine.
            total += float(np.einsum("i,i->", diff, diff))
    return total


def _updated(
    current: npt.NDArray[Any], locals_: list[npt.NDArray[Any]], factors: list[float]
) -> npt.NDArray[Any]:
    """current - sum_k factor_k (current - local_k), a block at a time, in float64."""
    flat = np.ravel(current)
    flats = [np.ravel(local) for local in locals_]
    out = np.empty(flat.size, dtype=current.dtype)
    step = np.empty(min(_BLOCK, flat.size), dtype=np.float64)
    diff = np.empty_like(step)
    for start in range(0, flat.size, _BLOCK):
        stop = min(start + _BLOCK, flat.size)
        width = stop - start
        s, d = step[:width], diff[:width]
        s.fill(0.0)
        for local, factor in zip(flats, factors, strict=True):
            np.subtract(flat[start:stop], local[start:stop], out=d, dtype=np.float64)
            d *= factor
            s += d
        np.subtract(flat[start:stop], s, out=s, dtype=np.float64)
        if current.dtype.kind in "biu":
            np.rint(s, out=s)
        out[start:stop] = s
    return out.reshape(current.shape)
