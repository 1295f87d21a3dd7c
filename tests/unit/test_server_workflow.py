"""DefaultWorkflow and LegacyContext: Flower's legacy loop as a ServerApp main."""

from __future__ import annotations

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.client import ClientApp, NumPyClient
from stamen.common.context import Context
from stamen.common.errors import ConfigError
from stamen.common.legacy import ndarrays_to_parameters
from stamen.common.records import ArrayRecord
from stamen.server import (
    Grid,
    LegacyContext,
    ServerApp,
    ServerAppComponents,
    ServerConfig,
)
from stamen.server.strategy import FedAvg
from stamen.server.workflow import DefaultWorkflow
from stamen.server.workflow.default_workflow import default_fit_workflow


class PlusOne(NumPyClient):
    def fit(self, parameters, config):
        return [p + 1 for p in parameters], 1, {}

    def evaluate(self, parameters, config):
        return float(parameters[0].sum()), 1, {}


def grid(nodes: int = 2) -> InProcessGrid:
    app = ClientApp(client_fn=lambda context: PlusOne().to_client())
    return InProcessGrid.with_apps(app, list(range(1, nodes + 1)))


def strategy() -> FedAvg:
    return FedAvg(initial_parameters=ndarrays_to_parameters([np.zeros(3, np.float32)]))


def context() -> Context:
    return Context(run_id=1, node_id=0, node_config={})


def test_default_workflow_in_a_main_runs_the_legacy_loop() -> None:
    app = ServerApp()
    seen: list[LegacyContext] = []

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=3), strategy=strategy())
        DefaultWorkflow()(grid, legacy)
        seen.append(legacy)

    app(grid(), context())
    (legacy,) = seen
    model = legacy.state.array_records["parameters"].to_numpy_ndarrays()
    np.testing.assert_array_equal(model[0], np.full(3, 3.0, np.float32))
    assert [r for r, _ in legacy.history.losses_distributed] == [1, 2, 3]
    assert legacy.state.config_records["config"]["current_round"] == 3


def test_a_custom_fit_workflow_sees_the_model_and_round_in_the_state() -> None:
    rounds: list[int] = []

    def doubling_fit(grid: Grid, context: Context) -> None:
        assert isinstance(context, LegacyContext)
        rounds.append(int(context.state.config_records["config"]["current_round"]))
        default_fit_workflow(grid, context)
        arrays = context.state.array_records["parameters"].to_numpy_ndarrays()
        context.state.array_records["parameters"] = ArrayRecord([2 * a for a in arrays])

    legacy = LegacyContext(context(), config=ServerConfig(num_rounds=2), strategy=strategy())
    DefaultWorkflow(fit_workflow=doubling_fit)(grid(), legacy)

    assert rounds == [1, 2]
    final = legacy.state.array_records["parameters"].to_numpy_ndarrays()[0]
    np.testing.assert_array_equal(final, np.full(3, 6.0, np.float32))  # ((0+1)*2+1)*2


def test_default_workflow_needs_a_legacy_context() -> None:
    with pytest.raises(TypeError, match="needs a LegacyContext"):
        DefaultWorkflow()(grid(), context())


def test_legacy_context_defaults_and_fields() -> None:
    legacy = LegacyContext(Context(run_id=4, node_id=0, node_config={}, run_config={"a": 1}))
    assert (legacy.run_id, legacy.run_config) == (4, {"a": 1})
    assert legacy.config == ServerConfig()
    assert isinstance(legacy.strategy, FedAvg)
    assert legacy.history.losses_distributed == []


def test_a_custom_server_is_refused_with_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="custom Server"):
        ServerApp(server=object())
    with pytest.raises(ConfigError, match="custom Server"):
        ServerAppComponents(server=object())


def test_serverapp_lifespan_runs_around_the_default_loop_even_when_it_fails() -> None:
    events: list[str] = []
    app = ServerApp(config=ServerConfig(num_rounds=1), strategy=strategy())

    @app.lifespan()
    def lifespan(context: Context):
        events.append("enter")
        yield
        events.append("exit")

    app(grid(), context())
    assert events == ["enter", "exit"]

    failing = ServerApp()

    @failing.lifespan()
    def twice(context: Context):
        yield
        yield

    @failing.main()
    def main(grid: Grid, context: Context) -> None:
        events.append("main")

    with pytest.raises(RuntimeError, match="only once"):
        failing(grid(), context())
    assert events[-1] == "main"
