"""The robust strategies and QFedAvg of both APIs run 2 rounds in a small simulation.

4 virtual SuperNodes (partition ids 0-3) move every array by -SHIFT[partition] and weigh
their reply by partition + 1, so each rule moves the model by its own known step a
round (STEP); the model keeps its dtypes. The ServerApp saves the final model.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stamen.client import ClientApp
from stamen.common.loading import load_app
from stamen.simulation import run_simulation

pytestmark = pytest.mark.timeout(60)

MESSAGE_CLIENT = """
from stamen.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from stamen.client import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    shift = [0.1, 0.2, 0.3, 0.5][pid]
    arrays = ArrayRecord({k: a.numpy() - shift for k, a in msg.content["arrays"].items()})
    metrics = MetricRecord({"num-examples": pid + 1, "train_loss": 0.5 * (pid + 1)})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)
"""

MESSAGE_SERVER = """
import json

import numpy as np
from stamen.app import ArrayRecord, Context
from stamen.serverapp import Grid, ServerApp
from stamen.serverapp import strategy as strategies

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    strategy = getattr(strategies, config["strategy"])(
        min_available_nodes=4, **json.loads(config["kwargs"])
    )
    initial = ArrayRecord({"w": np.zeros((3, 2), np.float32), "b": np.ones(4)})
    result = strategy.start(grid, initial, num_rounds=2)
    np.savez(config["save-to"], **{k: a.numpy() for k, a in result.arrays.items()})
"""

LEGACY_CLIENT = """
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def __init__(self, pid):
        self.pid = pid

    def fit(self, parameters, config):
        shift = [0.1, 0.2, 0.3, 0.5][self.pid]
        return [p - shift for p in parameters], self.pid + 1, {}

    def evaluate(self, parameters, config):
        return 1.0, 1, {}


def client_fn(context):
    return Client(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn)
"""

LEGACY_SERVER = """
import json

import numpy as np
from stamen.common import ndarrays_to_parameters, parameters_to_ndarrays
from stamen.server import ServerApp, ServerAppComponents, ServerConfig
from stamen.server import strategy as strategies


def evaluate_fn(server_round, arrays, config):
    return float(sum(np.abs(a).sum() for a in arrays)) + 0.5, {}


def server_fn(context):
    config = context.run_config
    initial = [np.zeros((3, 2), np.float32), np.ones(4)]
    strategy = getattr(strategies, config["strategy"])(
        min_available_clients=4,
        initial_parameters=ndarrays_to_parameters(initial),
        evaluate_fn=evaluate_fn,
        **json.loads(config["kwargs"]),
    )
    aggregate_fit = strategy.aggregate_fit

    def saving(server_round, results, failures):
        parameters, metrics = aggregate_fit(server_round, results, failures)
        arrays = parameters_to_ndarrays(parameters)
        np.savez(config["save-to"], w=arrays[0], b=arrays[1])
        return parameters, metrics

    strategy.aggregate_fit = saving
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=2))


app = ServerApp(server_fn=server_fn)
"""

MESSAGE_STRATEGIES: dict[str, dict[str, Any]] = {
    "FedMedian": {},
    "FedTrimmedAvg": {"beta": 0.25},
    "Krum": {},
    "MultiKrum": {"num_nodes_to_select": 3},
    "Bulyan": {},
    "QFedAvg": {"client_learning_rate": 0.1, "q": 0.2},
}

LEGACY_STRATEGIES: dict[str, dict[str, Any]] = {
    "FedMedian": {},
    "FedTrimmedAvg": {"beta": 0.25},
    "Krum": {},
    "MultiKrum": {"num_clients_to_keep": 3},  # legacy MultiKrum is Krum keeping several
    "Bulyan": {},
    "QFedAvg": {"q_param": 0.2, "qffl_learning_rate": 0.1},
}

STEP = {
    "FedMedian": 0.25,  # (0.2 + 0.3) / 2
    "FedTrimmedAvg": 0.25,  # 0.1 and 0.5 cut off
    "Krum": 0.2,  # distances to the two nearest: 2 for partition 1, then 5, 5, 13
    "MultiKrum": (0.1 * 1 + 0.2 * 2 + 0.3 * 3) / 6,  # the three lowest scores, weighted
    "Bulyan": 0.275,  # f = 0: all four kept, all four nearest the median
}
"""How far each rule moves every element in one round."""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("robust")
    sources = {
        "robust_msg_client": MESSAGE_CLIENT,
        "robust_msg_server": MESSAGE_SERVER,
        "robust_legacy_client": LEGACY_CLIENT,
        "robust_legacy_server": LEGACY_SERVER,
    }
    for name, source in sources.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    # Imported here first, so that each simulation forks its worker from this process.
    load_app("robust_msg_client:app", ClientApp, directory)
    load_app("robust_legacy_client:app", ClientApp, directory)
    yield directory
    for name in sources:
        sys.modules.pop(name, None)


def simulate(app_dir: Path, api: str, strategy: str, kwargs: dict[str, Any], saved: Path) -> None:
    legacy_name = "Krum" if (api, strategy) == ("legacy", "MultiKrum") else strategy
    run_config = {"strategy": legacy_name, "kwargs": json.dumps(kwargs), "save-to": str(saved)}
    run_simulation(
        f"robust_{api}_server:app",
        f"robust_{api}_client:app",
        4,
        backend_config={"num_workers": 1},
        run_config=run_config,
        directory=app_dir,
    )


def check_final_model(saved: Path, strategy: str) -> None:
    with np.load(saved) as final:
        w, b = final["w"], final["b"]
    assert (w.dtype, w.shape, b.dtype, b.shape) == (np.float32, (3, 2), np.float64, (4,))
    if strategy == "QFedAvg":  # a step towards the replies, never past the farthest
        assert np.all(w < 0)
        assert np.all(w > -1.0)
    else:
        np.testing.assert_allclose(w, -2 * STEP[strategy], rtol=1e-6)
        np.testing.assert_allclose(b, 1 - 2 * STEP[strategy], rtol=1e-12)


@pytest.mark.parametrize(("strategy", "kwargs"), MESSAGE_STRATEGIES.items())
def test_message_api_strategy_runs_two_rounds(
    app_dir: Path, tmp_path: Path, strategy: str, kwargs: dict[str, Any]
) -> None:
    saved = tmp_path / "final.npz"
    simulate(app_dir, "msg", strategy, kwargs, saved)
    check_final_model(saved, strategy)


@pytest.mark.parametrize(("strategy", "kwargs"), LEGACY_STRATEGIES.items())
def test_legacy_strategy_runs_two_rounds(
    app_dir: Path, tmp_path: Path, strategy: str, kwargs: dict[str, Any]
) -> None:
    saved = tmp_path / "final.npz"
    simulate(app_dir, "legacy", strategy, kwargs, saved)
    check_final_model(saved, strategy)
