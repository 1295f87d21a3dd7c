"""Robust aggregation kernels: median, trimmed mean, Krum scores, Bulyan's last step.

One kernel per algorithm, shared by the Message-API and the legacy strategies. Each takes
`models`, one list of arrays per reply, and walks every array in cache-sized blocks of
coordinates: a block of all replies is gathered into one small (replies, block) buffer, so
each statistic is a vectorized selection down the block's columns and no temporary the
size of the model exists per reply. Pairwise distances come from one Gram matrix accumulated block
by block (one symmetric BLAS product per block), centred on the first reply so the
squared norms do not swamp the distances. Results keep each array's dtype; integer arrays
are rounded once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from stamen.common.errors import AggregationError
from stamen.common.legacy import NDArrays

__all__ = [
    "krum_scores",
    "krum_select",
    "mean_closest_to_median",
    "median",
    "pairwise_sq_distances",
    "trimmed_mean",
]

Array = npt.NDArray[Any]

_BLOCK_BYTES = 1 << 20
"""Bytes of one gathered block (all replies): it stays in the CPU's L2 cache."""


def median(models: Sequence[NDArrays]) -> NDArrays:
    """Coordinate-wise median across replies (the mean of the two middle values if even)."""
    n = _check(models)
    high = n // 2

    def reduce(block: Array, out: Array) -> None:
        _middle(block, high, out, even=n % 2 == 0)

    return _per_coordinate(models, reduce)


def _middle(block: Array, high: int, out: Array, even: bool) -> None:
    """The median of each column of `block` (reordered in place) into `out`.

    One selection (numpy's multi-kth partition is several times slower than one); for
    an even count the lower middle is the largest value left of the upper one.
    """
    block.partition(high, axis=0)
    if even:
        np.max(block[:high], axis=0, out=out)
        out += block[high]
        out *= 0.5
    else:
        out[...] = block[high]


def trimmed_mean(models: Sequence[NDArrays], proportiontocut: float) -> NDArrays:
    """Coordinate-wise mean after cutting `int(proportiontocut * n)` values off each tail."""
    if not 0.0 <= proportiontocut < 0.5:
        raise ValueError("Proportion to cut must be in the range [0, 0.5).")
    n = _check(models)
    low = int(proportiontocut * n)
    high = n - low

    def reduce(block: Array, out: Array) -> None:
        if low > 0:  # two single-kth selections: the smallest `low`, then the largest
            block.partition(low, axis=0)
            block[low:].partition(high - 1 - low, axis=0)
        np.sum(block[low:high], axis=0, dtype=np.float64, out=out)
        out /= high - low

    return _per_coordinate(models, reduce)


def mean_closest_to_median(models: Sequence[NDArrays], beta: int) -> NDArrays:
    """Bulyan's last step: per coordinate, the mean of the `beta` values nearest the median."""
    n = _check(models)
    if not 1 <= beta <= n:
        raise AggregationError(f"cannot average the {beta} values closest to the median of {n}")
    high = n // 2
    centre = np.empty(0)

    def reduce(block: Array, out: Array) -> None:
        nonlocal centre
        if centre.shape != out.shape:
            centre = np.empty_like(out)
        _middle(block.copy(), high, centre, even=n % 2 == 0)
        distance = np.abs(block - centre)
        nearest = np.argpartition(distance, beta - 1, axis=0)[:beta]
        chosen = np.take_along_axis(block, nearest, axis=0)
        np.sum(chosen, axis=0, dtype=np.float64, out=out)
        out /= beta

    return _per_coordinate(models, reduce)


def pairwise_sq_distances(models: Sequence[NDArrays]) -> npt.NDArray[np.float64]:
    """Squared L2 distances between the replies' flattened models, an (n, n) matrix.

    ||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij with G the Gram matrix of x - x_0, summed in
    float64 over blocks (each block's product in the arrays' own float precision).
    """
    n = _check(models)
    gram = np.zeros((n, n), dtype=np.float64)
    for index in range(len(models[0])):
        dtype = np.result_type(models[0][index].dtype, np.float32)
        for block in _blocks(models, index, dtype):
            block -= block[0]  # centred on the first reply
            gram += block @ block.T  # (n, width) C-contiguous: one syrk
    norms = np.diag(gram).copy()
    distances = norms[:, None] + norms[None, :] - 2.0 * gram
    np.fill_diagonal(distances, 0.0)
    np.maximum(distances, 0.0, out=distances)
    return distances


def krum_scores(distances: npt.NDArray[np.float64], num_malicious: int) -> npt.NDArray[np.float64]:
    """Each reply's Krum score: the sum of its distances to its n - f - 2 nearest others."""
    n = distances.shape[0]
    num_closest = max(1, n - num_malicious - 2)
    nearest = np.sort(distances, axis=1)[:, 1 : num_closest + 1]
    scores: npt.NDArray[np.float64] = nearest.sum(axis=1)
    return scores


def krum_select(models: Sequence[NDArrays], num_malicious: int, num_to_select: int) -> list[int]:
    """Indices of the `num_to_select` replies with the lowest Krum scores, best first."""
    scores = krum_scores(pairwise_sq_distances(models), num_malicious)
    order = np.argsort(scores, kind="stable")
    return [int(i) for i in order[:num_to_select]]


def _check(models: Sequence[NDArrays]) -> int:
    if not models:
        raise AggregationError("cannot aggregate parameters: there are no results")
    first = models[0]
    for position, arrays in enumerate(models[1:], start=1):
        if len(arrays) != len(first):
            raise AggregationError(
                f"result {position} has {len(arrays)} arrays but result 0 has {len(first)}"
            )
        for index, (array, reference) in enumerate(zip(arrays, first, strict=True)):
            if array.shape != reference.shape or array.dtype != reference.dtype:
                raise AggregationError(
                    f"array {index}: result {position} has shape {array.shape} dtype "
                    f"{array.dtype}, but result 0 has shape {reference.shape} dtype "
                    f"{reference.dtype}"
                )
    return len(models)


def _work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Floats keep their precision; integers and bools are worked on as float64."""
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _blocks(models: Sequence[NDArrays], index: int, dtype: np.dtype[Any]) -> Iterator[Array]:
    """Array `index` of every reply, a block of coordinates at a time, as (n, width):
    row i is reply i's slice, copied contiguously (the kernels may reorder it)."""
    n = len(models)
    flats = [np.ravel(arrays[index]) for arrays in models]
    size = flats[0].size
    width = max(64, _BLOCK_BYTES // (n * dtype.itemsize))
    buffer = np.empty((n, min(width, size)), dtype=dtype)
    for start in range(0, size, width):
        stop = min(start + width, size)
        block = buffer[:, : stop - start]
        for row, flat in enumerate(flats):
            block[row] = flat[start:stop]
        yield block


def _per_coordinate(models: Sequence[NDArrays], reduce: Any) -> NDArrays:
    """Apply `reduce(block (n, width), out (width,))` to every block of every array."""
    result: NDArrays = []
    for index, reference in enumerate(models[0]):
        work = _work_dtype(reference.dtype)
        flat_out = np.empty(reference.size, dtype=work)
        start = 0
        for block in _blocks(models, index, work):
            stop = start + block.shape[1]
            reduce(block, flat_out[start:stop])
            start = stop
        result.append(_cast(flat_out.reshape(reference.shape), reference.dtype))
    return result


def _cast(values: Array, dtype: np.dtype[Any]) -> Array:
    if dtype.kind in "biu":
        values = np.rint(values)
    return values.astype(dtype, copy=False)
