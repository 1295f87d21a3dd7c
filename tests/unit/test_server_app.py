"""ServerApp end to end over an in-process Grid with real ClientApps."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.client import ClientApp, NumPyClient
from stamen.common.context import Context
from stamen.common.errors import (
    ConfigError,
    NotEnoughNodesError,
    RoundFailedError,
    UserInputError,
)
from stamen.common.legacy import ndarrays_to_parameters, parameters_to_ndarrays
from stamen.server import Grid, History, ServerApp, ServerAppComponents, ServerConfig
from stamen.server.strategy import FedAvg

INITIAL = [np.zeros((2, 3), np.float32), np.zeros(4, np.float64)]


class AddClient(NumPyClient):
    """Adds (partition + 1) to every array; weight 10 * (partition + 1)."""

    def __init__(self, partition: int, fail_on: set[int]) -> None:
        self.partition = partition
        self.fail_on = fail_on

    def get_parameters(self, config):
        return [a.copy() for a in INITIAL]

    def fit(self, parameters, config):
        if self.partition in self.fail_on:
            raise ZeroDivisionError("partition is cursed")
        return [p + self.partition + 1 for p in parameters], 10 * (self.partition + 1), {}

    def evaluate(self, parameters, config):
        return float(self.partition), 10 * (self.partition + 1), {"acc": 0.5}


def client_app(fail_on: set[int] | None = None) -> ClientApp:
    def client_fn(context: Context):
        return AddClient(int(context.node_config["partition-id"]), fail_on or set()).to_client()

    return ClientApp(client_fn=client_fn)


def grid_of(n: int, fail_on: set[int] | None = None) -> InProcessGrid:
    return InProcessGrid.with_apps(client_app(fail_on), [900 - 13 * i for i in range(n)])


def context(**run_config) -> Context:
    return Context(run_id=1, node_id=0, node_config={}, run_config=run_config)


def expected_after(rounds: int, partitions: list[int]) -> float:
    """The FedAvg value of every element after `rounds` rounds of AddClient from zero."""
    weights = [10 * (p + 1) for p in partitions]
    step = sum(w * (p + 1) for w, p in zip(weights, partitions, strict=True)) / sum(weights)
    return rounds * step


def final_parameters(strategy_calls: list) -> list[np.ndarray]:
    return parameters_to_ndarrays(strategy_calls[-1])


class Recording(FedAvg):
    """FedAvg that remembers the parameters it produced."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.produced: list = []

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = super().aggregate_fit(server_round, results, failures)
        self.produced.append(params)
        return params, metrics


def test_default_serverapp_runs_n_rounds_end_to_end(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    strategy = Recording(min_fit_clients=4, min_available_clients=4)
    app = ServerApp(config=ServerConfig(num_rounds=3), strategy=strategy)
    history = app(grid_of(4), context())

    assert len(strategy.produced) == 3
    final = final_parameters(strategy.produced)
    assert [a.dtype for a in final] == [np.float32, np.float64]
    np.testing.assert_allclose(final[1], expected_after(3, [0, 1, 2, 3]))
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3]
    assert history.losses_distributed[0][1] == pytest.approx((0 * 10 + 20 + 60 + 120) / 100)

    text = caplog.text
    for line in (
        "[INIT]",
        "Requesting initial parameters from one random client",
        "Received initial parameters from one random client",
        "Evaluating initial global parameters",
        "[ROUND 1]",
        "[ROUND 3]",
        "configure_fit: strategy sampled 4 clients (out of 4)",
        "aggregate_fit: received 4 results and 0 failures",
        "configure_evaluate: strategy sampled 4 clients (out of 4)",
        "aggregate_evaluate: received 4 results and 0 failures",
        "round 1 took ",
        "[SUMMARY]",
        "Run finished 3 rounds in ",
        "History (loss, distributed):",
        "\tround 3: 2.0",
    ):
        assert line in text, line


def test_serverapp_defaults_to_one_round_of_fedavg() -> None:
    grid = grid_of(2)
    history = ServerApp()(grid, context())
    assert [r for r, _ in history.losses_distributed] == [1]
    types = [m.metadata.message_type for m in grid.sent]
    assert types == ["query.get_parameters", "train", "train", "evaluate", "evaluate"]
    assert {m.metadata.group_id for m in grid.sent[1:]} == {"1"}


def test_broadcast_parameters_are_encoded_once_per_round() -> None:
    grid = grid_of(3)
    params = ndarrays_to_parameters(INITIAL)
    strategy = FedAvg(min_fit_clients=3, min_available_clients=3, initial_parameters=params)
    ServerApp(config=ServerConfig(num_rounds=2), strategy=strategy)(grid, context())
    for message_type, key in (
        ("train", "fitins.parameters"),
        ("evaluate", "evaluateins.parameters"),
    ):
        for group in ("1", "2"):
            sent = [
                m.content[key]
                for m in grid.sent
                if m.metadata.message_type == message_type and m.metadata.group_id == group
            ]
            assert len(sent) == 3
            assert all(record is sent[0] for record in sent)


def test_server_fn_form() -> None:
    seen: list[Context] = []

    def server_fn(ctx: Context) -> ServerAppComponents:
        seen.append(ctx)
        rounds = int(ctx.run_config["num-server-rounds"])
        return ServerAppComponents(
            strategy=FedAvg(min_fit_clients=3, min_available_clients=3),
            config=ServerConfig(num_rounds=rounds),
        )

    ctx = context(**{"num-server-rounds": 2})
    history = ServerApp(server_fn=server_fn)(grid_of(3), ctx)
    assert seen == [ctx]
    assert [r for r, _ in history.losses_distributed] == [1, 2]


def test_server_fn_must_return_components() -> None:
    app = ServerApp(server_fn=lambda ctx: FedAvg())  # type: ignore[arg-type, return-value]
    with pytest.raises(UserInputError, match="ServerAppComponents"):
        app(grid_of(2), context())


def test_main_form_gets_the_grid_and_context() -> None:
    app = ServerApp()
    calls: list[tuple[Grid, Context]] = []

    @app.main()
    def main(grid: Grid, ctx: Context) -> None:
        calls.append((grid, ctx))
        assert len(grid.get_node_ids()) == 2

    grid, ctx = grid_of(2), context()
    result = app(grid, ctx)
    assert calls == [(grid, ctx)]
    assert isinstance(result, History)
    assert grid.sent == []


def test_main_cannot_be_mixed_with_components() -> None:
    for app in (
        ServerApp(config=ServerConfig()),
        ServerApp(strategy=FedAvg()),
        ServerApp(server_fn=lambda ctx: ServerAppComponents()),
    ):
        with pytest.raises(ValueError, match="not both"):

            @app.main()
            def main(grid: Grid, ctx: Context) -> None:
                pass

    with pytest.raises(ValueError, match="server_fn"):
        ServerApp(server_fn=lambda ctx: ServerAppComponents(), config=ServerConfig())


def test_a_raising_client_is_a_failure_not_the_end(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    strategy = Recording(min_fit_clients=3, min_available_clients=3)
    app = ServerApp(config=ServerConfig(num_rounds=1), strategy=strategy)
    history = app(grid_of(3, fail_on={1}), context())
    assert "aggregate_fit: received 2 results and 1 failures" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    failure_lines = [w for w in warnings if "fit failure" in w]
    assert failure_lines == [  # the node by its config too: what a person knows it by
        f"round 1 fit failure: node {900 - 13} (partition-id=1): "
        "ZeroDivisionError: partition is cursed"
    ]
    assert history.failures == [(1, 1)]  # fit's one failure and evaluate's none
    np.testing.assert_allclose(final_parameters(strategy.produced)[0], expected_after(1, [0, 2]))


def test_accept_failures_false_stops_the_run_with_a_clear_error() -> None:
    strategy = FedAvg(min_fit_clients=3, min_available_clients=3, accept_failures=False)
    app = ServerApp(config=ServerConfig(num_rounds=2), strategy=strategy)
    with pytest.raises(RoundFailedError, match=r"round 1 \(fit\).*accept_failures=False") as info:
        app(grid_of(3, fail_on={2}), context())
    assert "ZeroDivisionError: partition is cursed" in str(info.value)
    assert info.value.server_round == 1


def test_a_round_in_which_every_node_failed_fails_the_run() -> None:
    strategy = FedAvg(min_fit_clients=2, min_available_clients=2)
    app = ServerApp(config=ServerConfig(num_rounds=2), strategy=strategy)
    with pytest.raises(RoundFailedError, match=r"round 1 \(fit\).*none replied with a result"):
        app(grid_of(2, fail_on={0, 1}), context())


def test_the_run_config_may_allow_empty_rounds() -> None:
    strategy = Recording(min_fit_clients=2, min_available_clients=2)
    app = ServerApp(config=ServerConfig(num_rounds=2), strategy=strategy)
    history = app(grid_of(2, fail_on={0, 1}), context(**{"allow-empty-rounds": True}))
    assert strategy.produced == [None, None]
    assert history is not None


def test_max_failure_rate_sets_the_threshold() -> None:
    strategy = FedAvg(min_fit_clients=3, min_available_clients=3)
    app = ServerApp(config=ServerConfig(num_rounds=1), strategy=strategy)
    with pytest.raises(
        RoundFailedError, match=r"33% of the nodes failed, over max-failure-rate 0.2"
    ):
        app(grid_of(3, fail_on={1}), context(**{"max-failure-rate": 0.2}))
    app(grid_of(3, fail_on={1}), context(**{"max-failure-rate": 0.5}))  # within it


@pytest.mark.parametrize(
    ("key", "value"),
    [("max-failure-rate", 2), ("max-failure-rate", "x"), ("allow-empty-rounds", 1)],
)
def test_failure_settings_are_checked(key: str, value: object) -> None:
    app = ServerApp(config=ServerConfig(num_rounds=1), strategy=FedAvg(min_available_clients=1))
    with pytest.raises(ConfigError, match=f"run config '{key}' must be"):
        app(grid_of(1), context(**{key: value}))


def test_missing_replies_count_as_failures(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    grid = grid_of(3)
    grid.silent.add(900)  # partition 0 never answers within the round timeout
    strategy = Recording(min_fit_clients=3, min_available_clients=3)
    params = ndarrays_to_parameters(INITIAL)
    strategy.initial_parameters = params
    history = ServerApp(config=ServerConfig(num_rounds=1, round_timeout=0.5), strategy=strategy)(
        grid, context()
    )
    assert "aggregate_fit: received 2 results and 1 failures" in caplog.text
    assert "aggregate_evaluate: received 2 results and 1 failures" in caplog.text
    assert "round 1 fit failure: node 900 (partition-id=0): no reply within 0.5s" in caplog.text
    assert history.failures == [(1, 2)]  # the silent node, in both phases
    np.testing.assert_allclose(final_parameters(strategy.produced)[0], expected_after(1, [1, 2]))


def test_same_seed_same_model_whatever_the_node_ids() -> None:
    def run(node_ids: list[int], seed: int) -> list[np.ndarray]:
        grid = InProcessGrid.with_apps(client_app(), node_ids)
        strategy = Recording(fraction_fit=0.5, min_fit_clients=2, min_available_clients=2)
        ServerApp(config=ServerConfig(num_rounds=3), strategy=strategy)(grid, context(seed=seed))
        return final_parameters(strategy.produced)

    simulation = run([1, 2, 3, 4, 5, 6], seed=11)
    deployment = run([77, 5, 1234, 9, 31, 400], seed=11)
    for a, b in zip(simulation, deployment, strict=True):
        assert a.tobytes() == b.tobytes()


def test_not_enough_nodes_gives_up_with_a_clear_error(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    strategy = FedAvg(min_fit_clients=5, min_available_clients=5)
    strategy.initial_parameters = ndarrays_to_parameters(INITIAL)
    app = ServerApp(config=ServerConfig(), strategy=strategy)
    with pytest.raises(NotEnoughNodesError, match="only 2 of the 5 nodes"):
        app(grid_of(2), context(**{"min-available-timeout": 0.05}))
    assert "waiting for nodes: 2 of 5 online" in caplog.text


def test_round_one_waits_for_min_available_clients() -> None:
    # A deployment's nodes come up one by one: round 1 must not sample only the early ones.
    class ArrivingGrid(InProcessGrid):
        calls = 0

        def get_nodes(self):  # the last node is online from the third look on
            self.calls += 1
            nodes = super().get_nodes()
            return nodes if self.calls > 2 else nodes[:-1]

    base = grid_of(3)
    grid = ArrivingGrid(base.nodes.values())
    strategy = FedAvg(min_fit_clients=2, min_available_clients=3)
    strategy.initial_parameters = ndarrays_to_parameters(INITIAL)
    ServerApp(config=ServerConfig(), strategy=strategy)(grid, context())
    trained = {m.metadata.dst_node_id for m in grid.sent if m.metadata.message_type == "train"}
    assert trained == set(base.nodes)


def test_history_repr_reads_like_flowers() -> None:
    history = History()
    history.add_loss_distributed(1, 0.5)
    history.add_loss_distributed(2, 0.25)
    history.add_metrics_distributed(1, {"acc": 0.75})
    assert repr(history) == (
        "History (loss, distributed):\n\tround 1: 0.5\n\tround 2: 0.25\n"
        "History (metrics, distributed, evaluate):\n\tacc:\n\t\tround 1: 0.75\n"
    )


def test_server_config_validates() -> None:
    with pytest.raises(ConfigError, match="num_rounds"):
        ServerConfig(num_rounds=-1)
    with pytest.raises(ConfigError, match="round_timeout"):
        ServerConfig(round_timeout=0)


class TimeoutsSeen(InProcessGrid):
    """Notes each round's wait and each instruction's TTL."""

    def __init__(self, inner: InProcessGrid) -> None:
        self.__dict__.update(inner.__dict__)
        self.timeouts: list[float | None] = []
        self.ttls: list[float] = []

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.timeouts.append(timeout)
        self.ttls.extend(m.metadata.ttl for m in messages)
        return super().send_and_receive(messages, timeout=timeout)


@pytest.mark.parametrize(
    ("config_timeout", "run_config", "expected"),
    [
        (None, {}, 600.0),  # DEFAULT_ROUND_TIMEOUT: no run waits an hour by default
        (30.0, {}, 30.0),
        (30.0, {"round-timeout": 12}, 12.0),  # the operator's run config wins
        (None, {"round-timeout": "7.5"}, 7.5),
    ],
)
def test_a_round_waits_its_timeout_and_its_instructions_live_as_long(
    config_timeout, run_config, expected
) -> None:
    grid = TimeoutsSeen(grid_of(2))
    strategy = FedAvg(min_fit_clients=2, min_available_clients=2)
    config = ServerConfig(num_rounds=1, round_timeout=config_timeout)
    ServerApp(config=config, strategy=strategy)(grid, context(**run_config))
    assert grid.timeouts
    assert set(grid.timeouts) == {expected}
    assert set(grid.ttls) == {expected}


@pytest.mark.parametrize("bad", ["soon", 0, -1, "inf"])
def test_a_bad_round_timeout_in_the_run_config_is_one_clear_error(bad) -> None:
    with pytest.raises(ConfigError, match="run config 'round-timeout' must be seconds > 0"):
        ServerApp()(grid_of(2), context(**{"round-timeout": bad}))
