"""Robust kernels against plain numpy, across block boundaries, and their clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inprocess_grid import InProcessGrid
from stamen.common.errors import AggregationError
from stamen.common.legacy import FitRes, Status, ndarrays_to_parameters
from stamen.server import ClientProxy
from stamen.server.strategy import Bulyan, FedMedian, FedTrimmedAvg, Krum, QFedAvg, robust
from stamen.server.strategy.aggregate import aggregate_bulyan, aggregate_krum
from stamen.server.strategy.qffl import qffl_update

GRID = InProcessGrid([])


def models(seed: int, n: int, shapes=((7, 5), (3,), ()), dtype=np.float32) -> list:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(n)]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of a few coordinates, so every array spans several of them."""
    monkeypatch.setattr(robust, "_BLOCK_BYTES", 64)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**16), st.sampled_from([np.float32, np.float64]))
def test_median_is_numpys(n, seed, dtype) -> None:
    ms = models(seed, n, dtype=dtype)
    for ours, layer in zip(robust.median(ms), zip(*ms, strict=True), strict=True):
        expected = np.median(np.stack(layer), axis=0)
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, expected, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**16), st.sampled_from([0.0, 0.1, 0.25, 0.49]))
def test_trimmed_mean_is_scipys_definition(n, seed, beta) -> None:
    ms = models(seed, n, dtype=np.float64)
    cut = int(beta * n)
    for ours, layer in zip(robust.trimmed_mean(ms, beta), zip(*ms, strict=True), strict=True):
        ordered = np.sort(np.stack(layer), axis=0)
        expected = ordered[cut : n - cut].mean(axis=0)
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_distances_are_brute_force_distances() -> None:
    ms = models(3, 6, dtype=np.float64)
    flat = [np.concatenate([a.ravel() for a in m]) for m in ms]
    expected = np.array([[np.sum((x - y) ** 2) for y in flat] for x in flat])
    np.testing.assert_allclose(robust.pairwise_sq_distances(ms), expected, rtol=1e-9, atol=1e-9)


def test_integer_arrays_stay_integers() -> None:
    ms = [[np.array([1, 4], np.int64)], [np.array([2, 8], np.int64)]]
    (out,) = robust.median(ms)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [2, 6])  # 1.5 rounds to even


def test_krum_picks_the_model_among_the_crowd() -> None:
    ms = models(4, 6)
    ms[1] = [a + 50 for a in ms[1]]
    chosen = aggregate_krum([(m, 1) for m in ms], num_malicious=1)
    best = robust.krum_select(ms, 1, 4)
    assert 1 not in best
    np.testing.assert_array_equal(chosen[0], ms[best[0]][0])


def test_mismatched_replies_raise_aggregation_error() -> None:
    ms = models(5, 3)
    ms[2] = ms[2][:2]
    with pytest.raises(AggregationError, match="result 2 has 2 arrays"):
        robust.median(ms)
    ms = models(5, 3)
    ms[1][0] = ms[1][0].astype(np.float64)
    with pytest.raises(AggregationError, match="array 0: result 1"):
        robust.trimmed_mean(ms, 0.1)
    with pytest.raises(AggregationError, match="no results"):
        robust.median([])


def test_bulyan_needs_enough_clients_and_krum() -> None:
    results = [(m, 1) for m in models(6, 6)]
    with pytest.raises(ValueError, match="4 \\* num_malicious \\+ 3 = 7, got 6"):
        aggregate_bulyan(results, 1)
    with pytest.raises(ValueError, match="Byzantine resilient"):
        aggregate_bulyan(results, 0, aggregation_rule=lambda **kw: [])
    with pytest.raises(ValueError, match="to_keep must be 0"):
        aggregate_bulyan(results, 0, to_keep=2)


def test_trimmed_avg_rejects_beta() -> None:
    with pytest.raises(ValueError, match="beta"):
        FedTrimmedAvg(beta=0.5)


def test_qffl_with_q_zero_is_an_unweighted_step() -> None:
    start = [np.zeros(4, np.float32)]
    replies = [([np.full(4, 1.0, np.float32)], 0.5), ([np.full(4, 3.0, np.float32)], 2.0)]
    # q = 0: every h_k = L, so the step is the mean of the local models.
    (out,) = qffl_update(start, replies, q=0.0, lipschitz=10.0)
    np.testing.assert_allclose(out, 2.0, rtol=1e-6)
    assert out.dtype == np.float32


def fit(i: int, arrays) -> tuple:
    return ClientProxy(10 + i, {"partition-id": i}, GRID), FitRes(
        Status(), ndarrays_to_parameters(arrays), 3, {}
    )


@pytest.mark.parametrize(
    "strategy", [FedMedian(), FedTrimmedAvg(), Krum(), Bulyan(), QFedAvg()], ids=repr
)
def test_no_results_or_refused_failures_keep_the_model(strategy) -> None:
    assert strategy.aggregate_fit(1, [], []) == (None, {})
    strategy.accept_failures = False
    results = [fit(i, [np.ones(2)]) for i in range(3)]
    assert strategy.aggregate_fit(1, results, [RuntimeError()]) == (None, {})


def test_qfedavg_without_evaluate_fn_says_why() -> None:
    strategy = QFedAvg()
    strategy.pre_weights = [np.zeros(2)]
    with pytest.raises(AggregationError, match="evaluate_fn"):
        strategy.aggregate_fit(1, [fit(0, [np.ones(2)])], [])


def test_fed_avg_android_averages_raw_float32_tensors() -> None:
    from stamen.common.legacy import Parameters
    from stamen.server.strategy import FedAvgAndroid

    strategy = FedAvgAndroid()
    results = [
        (
            ClientProxy(10 + i, {"partition-id": i}, GRID),
            FitRes(Status(), Parameters([np.full(3, v, np.float32).tobytes()], "numpy.nda"), n, {}),
        )
        for i, (v, n) in enumerate([(1.0, 1), (4.0, 2)])
    ]
    params, metrics = strategy.aggregate_fit(1, results, [])
    assert params is not None
    assert params.tensor_type == "numpy.nda"
    np.testing.assert_allclose(np.frombuffer(params.tensors[0], np.float32), 3.0)
    assert metrics == {}
