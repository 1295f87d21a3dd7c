"""Aggregation math, deterministic whatever the arrival order and node ids.

Weighted averages are sums in float64 (complex128 for complex arrays), a cache-sized
block of coordinates at a time across all updates, rounded to each array's dtype once.
The legacy helpers order results by (partition id, node id) first: floating-point sums
depend on their order, and that key is the same in simulation and in deployment.
`weighted_average` is the one kernel both APIs call: the legacy FedAvg through
`aggregate_inplace`, the Message API through `strategy_utils`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from stamen.common.errors import AggregationError
from stamen.common.legacy import FitRes, NDArrays, read_only_ndarrays

from ..client_proxy import ClientProxy
from .robust import krum_scores, mean_closest_to_median, median, pairwise_sq_distances, trimmed_mean

__all__ = [
    "aggregate",
    "aggregate_bulyan",
    "aggregate_inplace",
    "aggregate_krum",
    "aggregate_median",
    "aggregate_trimmed_avg",
    "ordered",
    "weighted_average",
    "weighted_loss_avg",
]

Weight = int | float

R = TypeVar("R")


def ordered(results: Iterable[tuple[ClientProxy, R]]) -> list[tuple[ClientProxy, R]]:
    """`results` sorted by their proxy's (partition id, node id)."""
    return sorted(results, key=lambda result: result[0].order_key)


def aggregate(results: Iterable[tuple[NDArrays, int]]) -> NDArrays:
    """The average of each array weighted by its number of examples, in the given order."""
    return weighted_average((f"result {i}", arrays, n) for i, (arrays, n) in enumerate(results))


def aggregate_inplace(results: Iterable[tuple[ClientProxy, FitRes]]) -> NDArrays:
    """FedAvg of fit results, ordered by node first; reads the arrays results hold."""
    return weighted_average(
        (
            f"node {proxy.node_id} (cid {proxy.cid})",
            read_only_ndarrays(res.parameters),
            res.num_examples,
        )
        for proxy, res in ordered(results)
    )


def weighted_loss_avg(results: Iterable[tuple[int, float]]) -> float:
    """The loss averaged over examples; exactly rounded, so order does not matter."""
    pairs = list(results)
    total = _total((n for n, _ in pairs), "losses")
    return math.fsum(n * float(loss) for n, loss in pairs) / total


def _total(counts: Iterable[Weight], what: str) -> Weight:
    """The exact sum of the weights (integers stay integers), in any order."""
    weights = list(counts)
    for n in weights:
        if not n >= 0 or not math.isfinite(n):
            raise AggregationError(f"cannot aggregate {what}: a result has {n} examples")
    total: Weight = sum(weights) if all(isinstance(n, int) for n in weights) else math.fsum(weights)
    if total == 0:
        raise AggregationError(
            f"cannot aggregate {what}: the results report 0 examples in total "
            "(num_examples weights the average; return the size of the local data)"
        )
    return total


def weighted_average(results: Iterable[tuple[str, NDArrays, Weight]]) -> NDArrays:
    """The average of each array weighted by its result's weight, summed in float64 in
    the given order; each result is a (label for errors, arrays, weight >= 0).

    The sums run a block of coordinates at a time across all results, so no float64
    sum the size of the model exists: the result is the only model-sized allocation.
    """
    taken = list(results)
    if not taken:
        raise AggregationError("cannot aggregate parameters: there are no results")
    first, first_arrays, _ = taken[0]
    reference = [(a.shape, a.dtype) for a in first_arrays]
    counts: list[Weight] = []
    for label, arrays, num_examples in taken:
        if not num_examples >= 0 or not math.isfinite(num_examples):
            raise AggregationError(
                f"cannot aggregate parameters: {label} has {num_examples} examples"
            )
        _check(label, arrays, first, reference)
        counts.append(num_examples)
    weight = _total(counts, "parameters")
    averages: NDArrays = []
    for index, (shape, dtype) in enumerate(reference):
        # In the first array's memory order, so that flattening it copies nothing.
        order: Literal["C", "F"] = "C" if first_arrays[index].flags.c_contiguous else "F"
        average = np.empty(shape, dtype=dtype, order=order)
        _average_blocks(
            average.ravel(order),
            [arrays[index].ravel(order) for _, arrays, _ in taken],
            counts,
            weight,
        )
        averages.append(average)
    return averages


def _average_blocks(
    out: npt.NDArray[Any], flats: list[npt.NDArray[Any]], counts: list[Weight], weight: Weight
) -> None:
    """out = round(sum(flat * count) / weight), summed in float64 a block at a time."""
    work = _accumulator(out.dtype)
    total = np.empty(min(_BLOCK, out.size), dtype=work)
    product = np.empty_like(total)
    for start in range(0, out.size, _BLOCK):
        stop = min(start + _BLOCK, out.size)
        block, step = total[: stop - start], product[: stop - start]
        block.fill(0)
        for flat, count in zip(flats, counts, strict=True):
            # Cast, then scale: faster than one multiply that casts on the fly.
            np.copyto(step, flat[start:stop])
            step *= count
            block += step
        np.divide(block, weight, out=block)
        if out.dtype.kind in "biu":
            np.rint(block, out=block)
        out[start:stop] = block


_BLOCK = 1 << 17
"""Elements per step of `_average_blocks`: its two 1 MiB float64 buffers stay in cache."""


def _accumulator(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.result_type(dtype, np.float64)


def _check(
    label: str,
    arrays: NDArrays,
    first: str,
    reference: list[tuple[tuple[int, ...], np.dtype[Any]]],
) -> None:
    if len(arrays) != len(reference):
        raise AggregationError(f"{label} has {len(arrays)} arrays but {first} has {len(reference)}")
    for index, (array, (shape, dtype)) in enumerate(zip(arrays, reference, strict=True)):
        if array.shape != shape or array.dtype != dtype:
            raise AggregationError(
                f"array {index}: {label} has shape {array.shape} dtype {array.dtype}, "
                f"but {first} has shape {shape} dtype {dtype}"
            )


# Flower's functional names for the robust kernels (`flwr.server.strategy.aggregate`).


def aggregate_median(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """The coordinate-wise median of the models; example counts are ignored."""
    return median([arrays for arrays, _ in results])


def aggregate_trimmed_avg(results: list[tuple[NDArrays, int]], proportiontocut: float) -> NDArrays:
    """The coordinate-wise mean after cutting `proportiontocut` of the values off each tail."""
    return trimmed_mean([arrays for arrays, _ in results], proportiontocut)


def aggregate_krum(
    results: list[tuple[NDArrays, int]], num_malicious: int, to_keep: int = 0
) -> NDArrays:
    """Krum: the model with the lowest score; MultiKrum (`to_keep` > 0): the weighted
    average of the `to_keep` models with the lowest scores."""
    scores = krum_scores(pairwise_sq_distances([arrays for arrays, _ in results]), num_malicious)
    if to_keep > 0:
        best = np.argsort(scores, kind="stable")[:to_keep]
        return aggregate(results[int(i)] for i in best)
    return [np.array(a) for a in results[int(np.argmin(scores))][0]]


def aggregate_bulyan(
    results: list[tuple[NDArrays, int]],
    num_malicious: int,
    aggregation_rule: Callable[..., NDArrays] = aggregate_krum,
    **aggregation_rule_kwargs: Any,
) -> NDArrays:
    """Bulyan (El Mhamdi et al., 2018): select n - 2f models by repeated Krum, then per
    coordinate average the n - 4f selected values closest to their median.

    Krum is the only selection rule (as in Flower); its distances are computed once.
    """
    if aggregation_rule is not aggregate_krum:
        raise ValueError(
            "The given aggregation rule is not added as Byzantine resilient. "
            "Please choose from Byzantine resilient rules (aggregate_krum)."
        )
    if aggregation_rule_kwargs.get("to_keep", 0) != 0:
        raise ValueError("Bulyan selects single models: the Krum rule's to_keep must be 0")
    num_clients = len(results)
    if num_clients < 4 * num_malicious + 3:
        raise ValueError(
            "The Bulyan aggregation requires the number of clients to be greater or "
            f"equal to 4 * num_malicious + 3 = {4 * num_malicious + 3}, got {num_clients}."
        )
    models = [arrays for arrays, _ in results]
    distances = pairwise_sq_distances(models)
    remaining = list(range(num_clients))
    selected: list[int] = []
    theta = num_clients - 2 * num_malicious
    for _ in range(theta):
        sub = distances[np.ix_(remaining, remaining)]
        best = remaining[int(np.argmin(krum_scores(sub, num_malicious)))]
        selected.append(best)
        remaining.remove(best)
    beta = theta - 2 * num_malicious
    return mean_closest_to_median([models[i] for i in selected], beta)
