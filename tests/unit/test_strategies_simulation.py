"""Every strategy of both APIs runs 2 rounds in a small in-process simulation.

3 virtual SuperNodes (partition ids 0-2) move every array by -0.1 * (partition + 1) and
weigh their reply by partition + 1, so FedAvg's model moves by exactly -0.1 * 14/6 a
round and the server optimizers move it elsewhere, always finite, in the model's dtypes.
The apps are written to a temporary directory; the ServerApp saves the final model.
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
    arrays = ArrayRecord({k: a.numpy() - 0.1 * (pid + 1) for k, a in msg.content["arrays"].items()})
    mu = float(msg.content["config"].get("proximal-mu", -1.0))
    metrics = MetricRecord({"num-examples": pid + 1, "mu": mu})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    total = sum(float(abs(a.numpy()).sum()) for a in msg.content["arrays"].values())
    metrics = MetricRecord({"num-examples": 1, "size": total})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
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
        min_available_nodes=3, **json.loads(config["kwargs"])
    )
    initial = ArrayRecord({"w": np.zeros((3, 2), np.float32), "b": np.ones(4)})
    result = strategy.start(grid, initial, num_rounds=2)
    np.savez(config["save-to"], **{k: a.numpy() for k, a in result.arrays.items()})
    metrics = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
    with open(config["save-to"] + ".json", "w") as file:
        json.dump({"train": metrics, "evaluate": sorted(result.evaluate_metrics_clientapp)}, file)
"""

LEGACY_CLIENT = """
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def __init__(self, pid):
        self.pid = pid

    def fit(self, parameters, config):
        mu = float(config.get("proximal_mu", -1.0))
        return [p - 0.1 * (self.pid + 1) for p in parameters], self.pid + 1, {"mu": mu}

    def evaluate(self, parameters, config):
        return float(sum(abs(p).sum() for p in parameters)), 1, {}


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


def server_fn(context):
    config = context.run_config
    initial = [np.zeros((3, 2), np.float32), np.ones(4)]
    strategy = getattr(strategies, config["strategy"])(
        min_available_clients=3,
        initial_parameters=ndarrays_to_parameters(initial),
        fit_metrics_aggregation_fn=lambda metrics: {"mu": metrics[0][1]["mu"]},
        **json.loads(config["kwargs"]),
    )
    aggregate_fit = strategy.aggregate_fit

    def saving(server_round, results, failures):
        parameters, metrics = aggregate_fit(server_round, results, failures)
        if parameters is not None:
            arrays = parameters_to_ndarrays(parameters)
            np.savez(config["save-to"], w=arrays[0], b=arrays[1])
        return parameters, metrics

    strategy.aggregate_fit = saving
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=2))


app = ServerApp(server_fn=server_fn)
"""

FEDAVG_STEP = 0.1 * (1 * 1 + 2 * 2 + 3 * 3) / 6
"""How far FedAvg moves every element in one round."""

MESSAGE_STRATEGIES: dict[str, dict[str, Any]] = {
    "FedAvg": {},
    "FedProx": {"proximal_mu": 0.25},
    "FedAdam": {},
    "FedYogi": {},
    "FedAdagrad": {},
    "FedAvgM": {"server_learning_rate": 0.9, "server_momentum": 0.5},
}

LEGACY_STRATEGIES: dict[str, dict[str, Any]] = {
    "FedAvg": {},
    "FedProx": {"proximal_mu": 0.25},
    "FedOpt": {},
    "FedAdam": {},
    "FedYogi": {},
    "FedAdagrad": {},
    "FedAvgM": {"server_learning_rate": 0.9, "server_momentum": 0.5},
    "FaultTolerantFedAvg": {},
}

AVERAGING = {"FedAvg", "FedProx", "FedOpt", "FaultTolerantFedAvg"}
"""Strategies whose model is FedAvg's aggregate."""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("strategies")
    for name, source in [
        ("msg_client", MESSAGE_CLIENT),
        ("msg_server", MESSAGE_SERVER),
        ("legacy_client", LEGACY_CLIENT),
        ("legacy_server", LEGACY_SERVER),
    ]:
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    # Imported here first, so that each simulation forks its worker from this process.
    load_app("msg_client:app", ClientApp, directory)
    load_app("legacy_client:app", ClientApp, directory)
    yield directory
    for name in ("msg_client", "msg_server", "legacy_client", "legacy_server"):
        sys.modules.pop(name, None)


def simulate(app_dir: Path, api: str, strategy: str, kwargs: dict[str, Any], saved: Path) -> Any:
    run_config = {"strategy": strategy, "kwargs": json.dumps(kwargs), "save-to": str(saved)}
    return run_simulation(
        f"{api}_server:app",
        f"{api}_client:app",
        3,
        backend_config={"num_workers": 1},
        run_config=run_config,
        directory=app_dir,
    )


def check_final_model(saved: Path, strategy: str) -> None:
    with np.load(saved) as final:
        w, b = final["w"], final["b"]
    assert (w.dtype, w.shape, b.dtype, b.shape) == (np.float32, (3, 2), np.float64, (4,))
    assert np.isfinite(w).all()
    assert np.isfinite(b).all()
    if strategy in AVERAGING:
        np.testing.assert_allclose(w, -2 * FEDAVG_STEP, rtol=1e-6)
        np.testing.assert_allclose(b, 1 - 2 * FEDAVG_STEP, rtol=1e-12)
    else:
        assert not np.allclose(w, 0.0)
        assert not np.allclose(w, -2 * FEDAVG_STEP)


@pytest.mark.parametrize(("strategy", "kwargs"), MESSAGE_STRATEGIES.items())
def test_message_api_strategy_runs_two_rounds(
    app_dir: Path, tmp_path: Path, strategy: str, kwargs: dict[str, Any]
) -> None:
    saved = tmp_path / "final.npz"
    simulate(app_dir, "msg", strategy, kwargs, saved)
    check_final_model(saved, strategy)
    metrics = json.loads(Path(f"{saved}.json").read_text())
    assert sorted(metrics["train"]) == ["1", "2"]
    assert metrics["evaluate"] == [1, 2]
    assert metrics["train"]["2"]["mu"] == pytest.approx(kwargs.get("proximal_mu", -1.0))


@pytest.mark.parametrize(("strategy", "kwargs"), LEGACY_STRATEGIES.items())
def test_legacy_strategy_runs_two_rounds(
    app_dir: Path, tmp_path: Path, strategy: str, kwargs: dict[str, Any]
) -> None:
    saved = tmp_path / "final.npz"
    history = simulate(app_dir, "legacy", strategy, kwargs, saved)
    check_final_model(saved, strategy)
    assert [r for r, _ in history.losses_distributed] == [1, 2]
    mu = history.metrics_distributed_fit["mu"]
    assert mu == [(1, kwargs.get("proximal_mu", -1.0)), (2, kwargs.get("proximal_mu", -1.0))]
