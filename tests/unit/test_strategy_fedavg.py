"""FedAvg: Flower's sampling numbers and semantics, with deterministic aggregation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.common.legacy import (
    Code,
    EvaluateRes,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.message import Message
from stamen.server import ClientManager, ClientProxy
from stamen.server.strategy import FedAvg

GRID = InProcessGrid([])


def unused(message: Message, context: object) -> Message:
    raise AssertionError("no messages expected")


def manager(n: int) -> ClientManager:
    cm = ClientManager()
    cm.bind(InProcessGrid.with_apps(unused, range(100, 100 + n)), wait_timeout=0.05)
    return cm


def fit(pid: int, value: float, n: int) -> tuple[ClientProxy, FitRes]:
    params = ndarrays_to_parameters([np.full(2, value, np.float32)])
    return ClientProxy(50 + pid, {"partition-id": pid}, GRID), FitRes(
        Status(), params, n, {"m": pid}
    )


def evaluation(pid: int, loss: float, n: int) -> tuple[ClientProxy, EvaluateRes]:
    return ClientProxy(50 + pid, {"partition-id": pid}, GRID), EvaluateRes(Status(), loss, n, {})


def test_number_of_clients_follows_flower() -> None:
    strategy = FedAvg(fraction_fit=0.3, min_fit_clients=2, fraction_evaluate=0.5)
    assert strategy.num_fit_clients(10) == (3, 2)
    assert strategy.num_fit_clients(4) == (2, 2)
    assert strategy.num_evaluation_clients(10) == (5, 2)


def test_configure_fit_samples_with_config_and_shared_instructions() -> None:
    strategy = FedAvg(fraction_fit=0.5, on_fit_config_fn=lambda r: {"round": r, "lr": 0.1})
    params = ndarrays_to_parameters([np.zeros(2)])
    instructions = strategy.configure_fit(3, params, manager(10))
    assert len(instructions) == 5
    assert len({p.node_id for p, _ in instructions}) == 5
    assert all(ins is instructions[0][1] for _, ins in instructions)
    assert instructions[0][1].config == {"round": 3, "lr": 0.1}
    assert instructions[0][1].parameters is params


def test_configure_evaluate_can_be_switched_off() -> None:
    strategy = FedAvg(fraction_evaluate=0.0)
    assert strategy.configure_evaluate(1, Parameters([]), manager(4)) == []


def test_initial_parameters_are_handed_over_once() -> None:
    params = ndarrays_to_parameters([np.ones(1)])
    strategy = FedAvg(initial_parameters=params)
    assert strategy.initialize_parameters(manager(2)) is params
    assert strategy.initialize_parameters(manager(2)) is None


def test_aggregate_fit_weighted_average_and_metrics() -> None:
    seen = []

    def metrics_fn(items):
        seen.extend(items)
        return {"total": sum(n for n, _ in items)}

    strategy = FedAvg(fit_metrics_aggregation_fn=metrics_fn)
    params, metrics = strategy.aggregate_fit(1, [fit(1, 3.0, 3), fit(0, 1.0, 1)], [])
    assert params is not None
    np.testing.assert_array_equal(parameters_to_ndarrays(params)[0], [2.5, 2.5])
    assert metrics == {"total": 4}
    assert seen == [(1, {"m": 0}), (3, {"m": 1})]  # partition order, not arrival order


def test_aggregate_fit_without_results_or_with_rejected_failures() -> None:
    assert FedAvg().aggregate_fit(1, [], [RuntimeError("x")]) == (None, {})
    strict = FedAvg(accept_failures=False)
    assert strict.aggregate_fit(1, [fit(0, 1.0, 1)], [RuntimeError("x")]) == (None, {})
    failed = (fit(1, 0.0, 1)[0], FitRes(Status(Code.FIT_NOT_IMPLEMENTED), Parameters([]), 0))
    params, _ = FedAvg().aggregate_fit(1, [fit(0, 1.0, 1)], [failed])
    assert params is not None


def test_aggregate_evaluate_weighted_loss() -> None:
    loss, metrics = FedAvg().aggregate_evaluate(
        1, [evaluation(0, 1.0, 1), evaluation(1, 3.0, 3)], []
    )
    assert loss == pytest.approx(2.5)
    assert metrics == {}


def test_missing_metrics_fns_warn_once_as_log_records(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="stamen")
    strategy = FedAvg()
    for server_round in (1, 2):
        strategy.aggregate_fit(server_round, [fit(0, 1.0, 1)], [])
        strategy.aggregate_evaluate(server_round, [evaluation(0, 1.0, 1)], [])
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("No fit_metrics_aggregation_fn provided") == 1
    assert messages.count("No evaluate_metrics_aggregation_fn provided") == 1


def test_min_available_lower_than_min_fit_warns(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="stamen")
    FedAvg(min_fit_clients=3, min_available_clients=2)
    assert "min_available_clients" in caplog.text


def test_centralized_evaluate_fn() -> None:
    calls = []

    def evaluate_fn(server_round, arrays, config):
        calls.append((server_round, [a.tolist() for a in arrays], config))
        return 0.25, {"acc": 0.9}

    strategy = FedAvg(evaluate_fn=evaluate_fn)
    result = strategy.evaluate(2, ndarrays_to_parameters([np.array([1.0])]))
    assert result == (0.25, {"acc": 0.9})
    assert calls == [(2, [[1.0]], {})]
    assert FedAvg().evaluate(2, Parameters([])) is None
