"""The DP wrappers and the XGBoost strategies of the Message API run 2 rounds in a small
simulation (4 virtual SuperNodes, partition ids 0-3).

DP: every node moves every array by -1; the wrappers clip (on the server, or on the node
through the clipping mods) and add seeded noise, so the model moves towards -1 by at most
the clipping norm a round. XGBoost: every node boosts on its own slice of a fixed data
set (xgboost runs in the workers only); bagging ends with every node's trees in the model,
cyclic with the two trees of one node after the other.
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

pytestmark = pytest.mark.timeout(90)

DP_CLIENT = """
from stamen.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from stamen.client import ClientApp
from stamen.clientapp.mod import adaptiveclipping_mod


def clip_when_asked(msg, ctxt, call_next):
    # Client-side wrappers send a clipping norm; server-side ones do not.
    if "clipping_norm" in msg.content["config"]:
        return adaptiveclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


app = ClientApp()


@app.train(mods=[clip_when_asked])
def train(msg: Message, context: Context) -> Message:
    arrays = ArrayRecord({k: a.numpy() - 1.0 for k, a in msg.content["arrays"].items()})
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)
"""

DP_SERVER = """
import json

import numpy as np
from stamen.app import ArrayRecord, Context
from stamen.serverapp import Grid, ServerApp
from stamen.serverapp import strategy as strategies

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    inner = strategies.FedAvg(min_available_nodes=4)
    wrapper = getattr(strategies, config["strategy"])
    strategy = wrapper(inner, num_sampled_clients=4, seed=3, **json.loads(config["kwargs"]))
    initial = ArrayRecord({"w": np.zeros((3, 2), np.float32), "b": np.ones(4)})
    result = strategy.start(grid, initial, num_rounds=2)
    np.savez(config["save-to"], **{k: a.numpy() for k, a in result.arrays.items()})
"""

XGB_CLIENT = """
import numpy as np
import xgboost as xgb
from stamen.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from stamen.client import ClientApp

PARAMS = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "nthread": 1}
app = ClientApp()


def data(pid):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    return xgb.DMatrix(x[pid::4], label=y[pid::4])


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    model = next(iter(msg.content["arrays"].values())).numpy().tobytes()
    if not model:
        booster = xgb.train(PARAMS, data(pid), num_boost_round=1)
    else:
        booster = xgb.Booster(PARAMS)
        booster.load_model(bytearray(model))
        booster.update(data(pid), booster.num_boosted_rounds())
        if context.run_config["strategy"] == "FedXgbBagging":  # send the new tree only
            rounds = booster.num_boosted_rounds()
            booster = booster[rounds - 1 : rounds]
    raw = np.frombuffer(bytes(booster.save_raw("json")), dtype=np.uint8)
    metrics = MetricRecord({"num-examples": 100})
    return Message(RecordDict({"arrays": ArrayRecord([raw]), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)
"""

XGB_SERVER = """
import numpy as np
from stamen.app import ArrayRecord, Context
from stamen.serverapp import Grid, ServerApp
from stamen.serverapp import strategy as strategies

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    strategy = getattr(strategies, config["strategy"])(min_available_nodes=4, fraction_evaluate=0.0)
    initial = ArrayRecord([np.frombuffer(b"", dtype=np.uint8)])
    result = strategy.start(grid, initial, num_rounds=2)
    with open(config["save-to"], "wb") as file:
        file.write(next(iter(result.arrays.values())).numpy().tobytes())
"""

DP_WRAPPERS: dict[str, dict[str, Any]] = {
    "DifferentialPrivacyServerSideFixedClipping": {"noise_multiplier": 0.1, "clipping_norm": 1.0},
    "DifferentialPrivacyClientSideFixedClipping": {"noise_multiplier": 0.1, "clipping_norm": 1.0},
    "DifferentialPrivacyServerSideAdaptiveClipping": {
        "noise_multiplier": 0.1,
        "initial_clipping_norm": 1.0,
        "clipped_count_stddev": 1.0,
    },
    "DifferentialPrivacyClientSideAdaptiveClipping": {
        "noise_multiplier": 0.1,
        "initial_clipping_norm": 1.0,
        "clipped_count_stddev": 1.0,
    },
}

SOURCES = {
    "dpx_dp_client": DP_CLIENT,
    "dpx_dp_server": DP_SERVER,
    "dpx_xgb_client": XGB_CLIENT,
    "dpx_xgb_server": XGB_SERVER,
}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("dp_xgb")
    for name, source in SOURCES.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    # Imported here first, so that each simulation forks its worker from this process.
    load_app("dpx_dp_client:app", ClientApp, directory)
    load_app("dpx_xgb_client:app", ClientApp, directory)
    yield directory
    for name in SOURCES:
        sys.modules.pop(name, None)


def simulate(app_dir: Path, kind: str, strategy: str, kwargs: dict[str, Any], saved: Path) -> None:
    run_config = {"strategy": strategy, "kwargs": json.dumps(kwargs), "save-to": str(saved)}
    run_simulation(
        f"dpx_{kind}_server:app",
        f"dpx_{kind}_client:app",
        4,
        backend_config={"num_workers": 1},
        run_config=run_config,
        directory=app_dir,
    )


@pytest.mark.parametrize(("strategy", "kwargs"), DP_WRAPPERS.items())
def test_dp_wrapper_runs_two_rounds(
    app_dir: Path, tmp_path: Path, strategy: str, kwargs: dict[str, Any]
) -> None:
    saved = tmp_path / "final.npz"
    simulate(app_dir, "dp", strategy, kwargs, saved)
    with np.load(saved) as final:
        w, b = final["w"], final["b"]
    assert (w.dtype, b.dtype) == (np.float32, np.float64)
    # Two rounds of updates of norm sqrt(10) clipped to <= ~1.1 each, plus small noise.
    update = np.concatenate([w.ravel(), b - 1.0])
    assert 0.1 < np.linalg.norm(update) < 2.5
    assert np.all(update < 0.05)


@pytest.mark.parametrize("strategy", ["FedXgbBagging", "FedXgbCyclic"])
def test_xgboost_strategy_runs_two_rounds(app_dir: Path, tmp_path: Path, strategy: str) -> None:
    saved = tmp_path / "final.json"
    simulate(app_dir, "xgb", strategy, {}, saved)
    # Read as JSON: xgboost's OpenMP threads in this process would make later forks unsafe.
    model = json.loads(saved.read_bytes())["learner"]["gradient_booster"]["model"]
    # Bagging: 4 first trees, then one new tree per node; cyclic: one node, one tree a round.
    expected = 8 if strategy == "FedXgbBagging" else 2
    assert int(model["gbtree_model_param"]["num_trees"]) == expected
    assert len(model["trees"]) == expected
    assert model["iteration_indptr"] == list(range(expected + 1))
