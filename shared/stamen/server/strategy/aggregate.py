"""Aggregation math, deterministic whatever the arrival order and node ids.

Weighted averages are a running sum in float64 (complex128 for complex arrays) over an
iterable, so updates need not all be in memory at once, rounded to each array's dtype
once at the end. The legacy helpers order results by (partition id, node id) first:
floating-point sums depend on their order, and that key is the same in simulation and
in deployment. `weighted_average` is the one kernel both APIs call: the legacy FedAvg
through `aggregate_inplace`, the Message API through `strategy_utils`.
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
    """FedAvg of fit results, ordered by node first; decodes one result at a time."""
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
    """The average of each array weighted by its result's weight, summed in the given
    order; each result is a (label for errors, arrays, weight >= 0) and is read once."""
    sums: list[npt.NDArray[Any]] | None = None
    reference: list[tuple[tuple[int, ...], np.dtype[Any]]] = []
    first = ""
    counts: list[Weight] = []
    for label, arrays, num_examples in results:
        if not num_examples >= 0 or not math.isfinite(num_examples):
            raise AggregationError(
                f"cannot aggregate parameters: {label} has {num_examples} examples"
            )
        counts.append(num_examples)
        if sums is None:
            first = label
            reference = [(a.shape, a.dtype) for a in arrays]
            # In each array's own memory order, so that flattening either copies nothing.
            sums = [np.zeros_like(a, dtype=_accumulator(a.dtype)) for a in arrays]
        _check(label, arrays, first, reference)
        for total, array in zip(sums, arrays, strict=True):
            order: Literal["C", "F"] = "C" if total.flags.c_contiguous else "F"
            _add_product(total.ravel(order), array.ravel(order), num_examples)
    if sums is None:
        raise AggregationError("cannot aggregate parameters: there are no results")
    weight = _total(counts, "parameters")
    return [
        _round(np.divide(total, weight, out=total), dtype)
        for total, (_, dtype) in zip(sums, reference, strict=True)
    ]


_BLOCK = 1 << 15
"""Elements per step of `_add_product`: its product buffer stays in the CPU cache."""


def _add_product(total: npt.NDArray[Any], array: npt.NDArray[Any], factor: Weight) -> None:
    """total += array * factor, in `total`'s dtype, a cache-sized block at a time.

    Element for element the same arithmetic as `total += np.multiply(array, factor,
    dtype=total.dtype)`, without writing (and reading back) a model-sized temporary.
    """
    product = np.empty(min(_BLOCK, total.size), dtype=total.dtype)
    for start in range(0, total.size, _BLOCK):
        stop = min(start + _BLOCK, total.size)
        block = product[: stop - start]
        np.multiply(array[start:stop], factor, out=block, dtype=total.dtype)
        np.add(total[start:stop], block, out=total[start:stop])


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


def _round(mean: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    if dtype.kind in "biu":
        mean = np.rint(mean)
    return mean.astype(dtype, copy=False)


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
