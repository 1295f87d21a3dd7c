"""Aggregation math: numpy reference, order independence, clear errors."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inprocess_grid import InProcessGrid
from stamen.common.errors import AggregationError
from stamen.common.legacy import FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from stamen.server import ClientProxy
from stamen.server.strategy import aggregate, aggregate_inplace, weighted_loss_avg
from stamen.server.strategy.aggregate import weighted_average

GRID = InProcessGrid([])


def fit_result(node_id: int, partition: int | None, arrays: list[np.ndarray], n: int):
    config = {} if partition is None else {"partition-id": partition}
    res = FitRes(Status(), ndarrays_to_parameters(arrays), n, {})
    return ClientProxy(node_id, config, GRID), res


def make_results(count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [
        fit_result(
            1000 - 7 * i,
            i,
            [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5)],
            int(rng.integers(1, 100)),
        )
        for i in range(count)
    ]


def reference(results: list) -> list[np.ndarray]:
    """Sum of n_i * x_i in float64 in partition order, divided once, cast once."""
    ordered = sorted(results, key=lambda r: r[0].partition_id)
    decoded = [(parameters_to_ndarrays(res.parameters), res.num_examples) for _, res in ordered]
    total = sum(n for _, n in decoded)
    out = []
    for index in range(len(decoded[0][0])):
        acc = np.zeros(decoded[0][0][index].shape, dtype=np.float64)
        for arrays, n in decoded:
            acc += arrays[index].astype(np.float64) * n
        out.append((acc / total).astype(decoded[0][0][index].dtype))
    return out


def test_fedavg_matches_numpy_weighted_average() -> None:
    results = make_results(6)
    got = aggregate_inplace(results)
    want = reference(results)
    assert [a.dtype for a in got] == [np.float32, np.float64]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    # And it is the weighted average numpy computes its own way, to float precision.
    stacked = np.stack([parameters_to_ndarrays(r.parameters)[1] for _, r in results])
    weights = [r.num_examples for _, r in results]
    np.testing.assert_allclose(got[1], np.average(stacked, axis=0, weights=weights), rtol=1e-12)


def test_large_arrays_aggregate_block_by_block_to_the_same_result() -> None:
    """Arrays longer than one accumulation block, Fortran order and integers included."""
    rng = np.random.default_rng(7)
    size = 3 * (1 << 15) + 5
    results = [
        fit_result(
            i,
            i,
            [
                rng.standard_normal(size).astype(np.float32),
                np.asfortranarray(rng.standard_normal((300, 400))),
                rng.integers(-1000, 1000, size=(size,), dtype=np.int32),
            ],
            int(rng.integers(1, 100)),
        )
        for i in range(3)
    ]
    got = aggregate_inplace(results)
    want = reference(results)
    want[2] = np.rint(
        sum(
            parameters_to_ndarrays(r.parameters)[2].astype(np.float64) * r.num_examples
            for _, r in results
        )
        / sum(r.num_examples for _, r in results)
    ).astype(np.int32)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_result_does_not_depend_on_arrival_order() -> None:
    results = make_results(12, seed=3)
    baseline = aggregate_inplace(results)
    shuffled = list(results)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        again = aggregate_inplace(shuffled)
        for a, b in zip(baseline, again, strict=True):
            assert a.tobytes() == b.tobytes()


def test_order_is_by_partition_then_node_id() -> None:
    grid = InProcessGrid([])
    proxies = [
        ClientProxy(5, {}, grid),
        ClientProxy(9, {"partition-id": 1}, grid),
        ClientProxy(2, {}, grid),
        ClientProxy(1, {"partition-id": "0"}, grid),
    ]
    ordered = sorted(proxies, key=lambda p: p.order_key)
    assert [p.node_id for p in ordered] == [1, 9, 2, 5]
    assert [p.cid for p in ordered] == ["0", "1", "2", "5"]


def test_shape_mismatch_names_the_array_and_shapes() -> None:
    results = [
        fit_result(1, 0, [np.zeros(3), np.zeros((2, 2))], 1),
        fit_result(2, 1, [np.zeros(3), np.zeros((2, 3))], 1),
    ]
    with pytest.raises(AggregationError, match=r"array 1: .*\(2, 3\).*\(2, 2\)"):
        aggregate_inplace(results)


def test_dtype_and_length_mismatch_are_errors() -> None:
    with pytest.raises(AggregationError, match=r"array 0: result 1 .*float32.*float64"):
        aggregate([([np.zeros(2)], 1), ([np.zeros(2, np.float32)], 1)])
    with pytest.raises(AggregationError, match="has 2 arrays but result 0 has 1"):
        aggregate([([np.zeros(2)], 1), ([np.zeros(2), np.zeros(1)], 1)])


def test_zero_examples_and_no_results_are_clear_errors() -> None:
    with pytest.raises(AggregationError, match="0 examples in total"):
        aggregate([([np.ones(2)], 0), ([np.ones(2)], 0)])
    with pytest.raises(AggregationError, match="no results"):
        aggregate([])
    with pytest.raises(AggregationError, match="-1 examples"):
        aggregate([([np.ones(2)], -1)])
    with pytest.raises(AggregationError, match="0 examples in total"):
        weighted_loss_avg([(0, 1.0)])


def test_integer_arrays_round_once_to_their_dtype() -> None:
    got = aggregate([([np.array([1, 2], np.int32)], 1), ([np.array([2, 5], np.int32)], 2)])
    assert got[0].dtype == np.int32
    np.testing.assert_array_equal(got[0], [2, 4])  # (1+4)/3=1.67 -> 2, (2+10)/3=4


def test_aggregate_takes_an_iterator() -> None:
    stream = (([np.full(3, float(i))], 1) for i in range(4))
    np.testing.assert_array_equal(aggregate(stream)[0], np.full(3, 1.5))


def test_weighted_loss_avg() -> None:
    assert weighted_loss_avg([(1, 1.0), (3, 3.0)]) == pytest.approx(2.5)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 1000),
            st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_weighted_average_is_order_independent_and_bounded(rows, rnd) -> None:
    results = [
        fit_result(50 - i, i, [np.array(values, np.float32)], n)
        for i, (n, values) in enumerate(rows)
    ]
    got = aggregate_inplace(results)[0]
    shuffled = list(results)
    rnd.shuffle(shuffled)
    assert got.tobytes() == aggregate_inplace(shuffled)[0].tobytes()
    column = np.array([np.float32(v) for _, vs in rows for v in vs]).reshape(len(rows), 3)
    assert np.all(got >= column.min(axis=0))
    assert np.all(got <= column.max(axis=0))


def test_weighted_average_allocates_only_the_result() -> None:
    """Sums run a block at a time: no float64 buffer the size of the model (numpy's
    allocations are traced by tracemalloc)."""
    size = 1 << 22
    replies = [(f"r{i}", [np.full(size, i, np.float32)], i + 1) for i in range(3)]
    tracemalloc.start()
    try:
        (average,) = weighted_average(replies)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The result, plus block buffers well below the float64 sum (twice the result).
    assert average.nbytes <= peak < 1.5 * average.nbytes
    np.testing.assert_allclose(average, (0 * 1 + 1 * 2 + 2 * 3) / 6)
