"""Server optimizers (FedAdam, FedYogi, FedAdagrad, FedAvgM): the block-wise kernel equals
the textbook formulas, and each misuse is one clear error."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.common.errors import AggregationError
from stamen.common.legacy import (
    EvaluateRes,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server import ClientProxy
from stamen.server import strategy as legacy
from stamen.server.strategy.server_opt import AdaptiveOptimizer, MomentumOptimizer
from stamen.serverapp import strategy as message_api
from stamen.serverapp.strategy.fedopt import FedOpt


def reference_adaptive(variant: str, current, rounds, eta, b1, b2, tau):
    """The formulas, in float64, whole arrays at a time."""
    x = [a.astype(np.float64) for a in current]
    m = [np.zeros_like(a) for a in x]
    v = [np.zeros_like(a) for a in x]
    for server_round, aggregated in enumerate(rounds, start=1):
        d = [g - c for g, c in zip(aggregated, x, strict=True)]
        m = [b1 * mi + (1 - b1) * di for mi, di in zip(m, d, strict=True)]
        if variant == "adam":
            v = [b2 * vi + (1 - b2) * di**2 for vi, di in zip(v, d, strict=True)]
            t = server_round + 1.0
            lr = eta * np.sqrt(1 - b2**t) / (1 - b1**t)
        elif variant == "yogi":
            v = [vi - (1 - b2) * di**2 * np.sign(vi - di**2) for vi, di in zip(v, d, strict=True)]
            lr = eta
        else:
            v = [vi + di**2 for vi, di in zip(v, d, strict=True)]
            lr = eta
        x = [xi + lr * mi / (np.sqrt(vi) + tau) for xi, mi, vi in zip(x, m, v, strict=True)]
    return x


@pytest.mark.parametrize("variant", ["adam", "yogi", "adagrad"])
def test_adaptive_kernel_equals_the_formulas_across_blocks(variant: str) -> None:
    rng = np.random.default_rng(1)
    current = [rng.standard_normal(70_001), rng.standard_normal((5, 3))]
    rounds = [[c + 0.1 * rng.standard_normal(c.shape) for c in current] for _ in range(3)]
    optimizer = AdaptiveOptimizer(variant, 0.05, 0.9, 0.99, 1e-3)  # type: ignore[arg-type]
    model = current
    for server_round, aggregated in enumerate(rounds, start=1):
        # Non-contiguous aggregate: the kernel reads it without assuming a layout.
        aggregated = [np.asfortranarray(a) for a in aggregated]
        model = optimizer.step(model, aggregated, server_round)
    expected = reference_adaptive(variant, current, rounds, 0.05, 0.9, 0.99, 1e-3)
    for ours, theirs in zip(model, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_momentum_kernel_equals_sgd_with_momentum() -> None:
    rng = np.random.default_rng(2)
    current = [rng.standard_normal(40_000).astype(np.float32), np.arange(6, dtype=np.int64)]
    optimizer = MomentumOptimizer(server_learning_rate=0.7, server_momentum=0.5)
    x = [a.astype(np.float64) for a in current]
    momentum = None
    model = current
    for _ in range(3):
        aggregated = [(a - rng.uniform(0, 2, a.shape)).astype(a.dtype) for a in model]
        gradient = [m.astype(np.float64) - g for m, g in zip(model, aggregated, strict=True)]
        momentum = (
            gradient
            if momentum is None
            else [0.5 * mv + g for mv, g in zip(momentum, gradient, strict=True)]
        )
        x = [m.astype(np.float64) - 0.7 * mv for m, mv in zip(model, momentum, strict=True)]
        model = optimizer.step(model, aggregated)
        assert [a.dtype for a in model] == [np.float32, np.int64]
        np.testing.assert_allclose(model[0], x[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(model[1], np.rint(x[1]))
        # The state keeps a float model's dtype (float64 for an integer one).
        momentum = [momentum[0].astype(np.float32), momentum[1]]


def test_a_model_that_changes_shape_is_a_clear_error() -> None:
    optimizer = AdaptiveOptimizer("adam", 0.1, 0.9, 0.99, 1e-3)
    with pytest.raises(AggregationError, match=r"array 0: .* shape \(3,\) .* \(2,\)"):
        optimizer.step([np.zeros(2)], [np.zeros(3)], 1)
    with pytest.raises(AggregationError, match="has 2 arrays but the current global model has 1"):
        MomentumOptimizer(1.0, 0.9).step([np.zeros(2)], [np.zeros(2), np.zeros(1)])


def reply(node_id: int, arrays: dict[str, np.ndarray]) -> Message:
    sent = Message(RecordDict(), node_id, MessageType.TRAIN)
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 1})}
    )
    return Message(content, reply_to=sent)


def unused(message: Message, context: object) -> Message:
    raise AssertionError("nothing is sent")


@pytest.mark.parametrize("cls", [message_api.FedAdam, message_api.FedYogi, message_api.FedAdagrad])
def test_message_fedopt_needs_configure_train_and_the_same_keys(cls: type[FedOpt]) -> None:
    strategy = cls()
    with pytest.raises(AggregationError, match="configure_train"):
        strategy.aggregate_train(1, [reply(1, {"w": np.ones(2)})])
    grid = InProcessGrid.with_apps(unused, [1, 2])
    list(strategy.configure_train(1, ArrayRecord({"w": np.zeros(2)}), ConfigRecord(), grid))
    with pytest.raises(AggregationError, match="Keys of the aggregated arrays"):
        strategy.aggregate_train(1, [reply(1, {"v": np.ones(2)})])
    new, _ = strategy.aggregate_train(1, [reply(1, {"w": np.ones(2)})])
    assert new is not None
    assert strategy.m_t is not None
    assert list(strategy.m_t) == ["w"]


def test_message_fedopt_base_is_fedavg() -> None:
    strategy = FedOpt()
    grid = InProcessGrid.with_apps(unused, [1, 2])
    list(strategy.configure_train(1, ArrayRecord({"w": np.zeros(2)}), ConfigRecord(), grid))
    new, _ = strategy.aggregate_train(1, [reply(1, {"w": np.ones(2)}), reply(2, {"w": np.ones(2)})])
    assert new is not None
    np.testing.assert_array_equal(new["w"].numpy(), np.ones(2))
    assert strategy.m_t is None


def test_message_fedavgm_needs_configure_train() -> None:
    strategy = message_api.FedAvgM(server_momentum=0.9)
    with pytest.raises(AggregationError, match="No initial parameters set for FedAvgM"):
        strategy.aggregate_train(1, [reply(1, {"w": np.ones(2)})])


def test_legacy_fedavgm_with_server_opt_needs_initial_parameters() -> None:
    strategy = legacy.FedAvgM(server_learning_rate=0.5)
    results = [
        (
            ClientProxy(1, {}, InProcessGrid([])),
            FitRes(Status(), ndarrays_to_parameters([np.ones(2)]), 1, {}),
        )
    ]
    with pytest.raises(AggregationError, match="pass initial_parameters"):
        strategy.aggregate_fit(1, results, [])


def test_legacy_fedavgm_keeps_its_current_model_from_round_to_round() -> None:
    initial = ndarrays_to_parameters([np.zeros(2)])
    strategy = legacy.FedAvgM(initial_parameters=initial, server_learning_rate=0.5)
    assert strategy.initialize_parameters(None) is initial  # type: ignore[arg-type]
    grid = InProcessGrid([])
    results = [
        (ClientProxy(1, {}, grid), FitRes(Status(), ndarrays_to_parameters([np.ones(2)]), 1, {}))
    ]
    first, _ = strategy.aggregate_fit(1, results, [])
    second, _ = strategy.aggregate_fit(2, results, [])
    assert first is not None
    assert second is not None
    np.testing.assert_allclose(parameters_to_ndarrays(first)[0], 0.5)
    np.testing.assert_allclose(parameters_to_ndarrays(second)[0], 0.75)


def test_summaries_and_the_fedprox_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        message_api.FedProx().summary()
        message_api.FedAdam().summary()
        message_api.FedAvgM(server_momentum=0.9).summary()
    text = caplog.text
    assert "FedProx initialized with `proximal_mu=0.0`" in text
    assert "Proximal mu: 0.0" in text
    assert "eta (0.1) | eta_l (0.1)" in text
    assert "beta_1 (0.9) | beta_2 (0.99)" in text
    assert "Server optimization: ON" in text
    assert "Minimum available nodes: 2" in text


def test_legacy_fault_tolerant_fedavg_needs_its_completion_rate() -> None:
    grid = InProcessGrid([])
    strategy = legacy.FaultTolerantFedAvg(min_completion_rate_evaluate=0.75)
    results = [(ClientProxy(i, {}, grid), EvaluateRes(Status(), float(i), 1, {})) for i in (1, 2)]
    assert strategy.aggregate_evaluate(1, results, [RuntimeError("x")]) == (None, {})
    loss, _ = strategy.aggregate_evaluate(1, results, [])
    assert loss == pytest.approx(1.5)
    assert repr(strategy) == "FaultTolerantFedAvg()"
    assert repr(legacy.FedAdam(initial_parameters=ndarrays_to_parameters([]))) == (
        "FedAdam(accept_failures=True)"
    )


def test_in_place_step_writes_over_the_aggregate_and_allocates_no_model() -> None:
    size = 1 << 20
    current = [np.zeros(size, np.float32)]
    aggregated = [np.full(size, 0.5, np.float32)]
    expected = AdaptiveOptimizer("adam", 0.1, 0.9, 0.99, 1e-3).step(
        current, [aggregated[0].copy()], 1
    )
    optimizer = AdaptiveOptimizer("adam", 0.1, 0.9, 0.99, 1e-3)
    # The moments, as the first step creates them, exist before the traced step.
    optimizer.m_t, optimizer.v_t = [np.zeros(size, np.float32)], [np.zeros(size, np.float32)]
    tracemalloc.start()
    try:
        (new,) = optimizer.step(current, aggregated, 1, in_place=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert new is aggregated[0]
    np.testing.assert_array_equal(new, expected[0])
    assert peak < new.nbytes // 2  # block buffers only, not one more model
