"""The legacy strategies whose Parameters hold opaque bytes run 2 rounds in simulation.

FedXgbBagging and FedXgbCyclic move xgboost's JSON models (tensor_type ""), FedAvgAndroid
raw float32 buffers (tensor_type "numpy.nda"): the legacy codec carries such tensors as
uint8 arrays with their tensor_type, so client and strategy see the very bytes sent.
4 virtual SuperNodes, partition ids 0-3; xgboost runs in the workers only.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from stamen.client import ClientApp
from stamen.common.legacy import (
    RAW_TENSOR_TYPE_KEY,
    Parameters,
    arrayrecord_to_parameters,
    ndarrays_to_parameters,
    parameters_to_arrayrecord,
    parameters_to_ndarrays,
)
from stamen.common.loading import load_app
from stamen.simulation import run_simulation

pytestmark = pytest.mark.timeout(90)

XGB_CLIENT = """
import numpy as np
import xgboost as xgb
from stamen.client import Client, ClientApp
from stamen.common import Code, EvaluateRes, FitRes, Parameters, Status

PARAMS = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "nthread": 1}


def data(pid):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    return xgb.DMatrix(x[pid::4], label=y[pid::4])


class XgbClient(Client):
    def __init__(self, pid, bagging):
        self.pid = pid
        self.bagging = bagging

    def fit(self, ins):
        assert ins.parameters.tensor_type == ""
        model = ins.parameters.tensors[0] if ins.parameters.tensors else b""
        if not model:
            booster = xgb.train(PARAMS, data(self.pid), num_boost_round=1)
        else:
            booster = xgb.Booster(PARAMS)
            booster.load_model(bytearray(model))
            booster.update(data(self.pid), booster.num_boosted_rounds())
            if self.bagging:  # send the new tree only
                rounds = booster.num_boosted_rounds()
                booster = booster[rounds - 1 : rounds]
        tensors = [bytes(booster.save_raw("json"))]
        return FitRes(Status(Code.OK, "OK"), Parameters(tensors, ""), 100, {})

    def evaluate(self, ins):
        return EvaluateRes(Status(Code.OK, "OK"), 0.0, 1, {})


def client_fn(context):
    bagging = context.run_config["strategy"] == "FedXgbBagging"
    return XgbClient(int(context.node_config["partition-id"]), bagging)


app = ClientApp(client_fn=client_fn)
"""

ANDROID_CLIENT = """
import numpy as np
from stamen.client import Client, ClientApp
from stamen.common import Code, EvaluateRes, FitRes, Parameters, Status


class AndroidClient(Client):
    def __init__(self, pid):
        self.pid = pid

    def fit(self, ins):
        assert ins.parameters.tensor_type == "numpy.nda"
        step = np.float32(0.1 * (self.pid + 1))
        moved = [(np.frombuffer(t, np.float32) - step).tobytes() for t in ins.parameters.tensors]
        return FitRes(Status(Code.OK, "OK"), Parameters(moved, "numpy.nda"), self.pid + 1, {})

    def evaluate(self, ins):
        return EvaluateRes(Status(Code.OK, "OK"), float(self.pid), 1, {})


app = ClientApp(client_fn=lambda context: AndroidClient(int(context.node_config["partition-id"])))
"""

SERVER = """
import json

import numpy as np
from stamen.common import Parameters
from stamen.server import ServerApp, ServerAppComponents, ServerConfig
from stamen.server import strategy as strategies


def server_fn(context):
    config = context.run_config
    if config["strategy"] == "FedAvgAndroid":
        initial = [np.zeros(6, np.float32).tobytes(), np.ones(4, np.float32).tobytes()]
        parameters = Parameters(initial, "numpy.nda")
    else:
        parameters = Parameters([], "")
    strategy = getattr(strategies, config["strategy"])(
        min_available_clients=4, fraction_evaluate=0.0, initial_parameters=parameters
    )
    aggregate_fit = strategy.aggregate_fit

    def saving(server_round, results, failures):
        parameters, metrics = aggregate_fit(server_round, results, failures)
        if parameters is not None:
            with open(config["save-to"], "w") as file:
                tensors = [t.hex() for t in parameters.tensors]
                file.write(json.dumps({"type": parameters.tensor_type, "tensors": tensors}))
        return parameters, metrics

    strategy.aggregate_fit = saving
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=2))


app = ServerApp(server_fn=server_fn)
"""

SOURCES = {"raw_xgb_client": XGB_CLIENT, "raw_android_client": ANDROID_CLIENT, "raw_server": SERVER}

ANDROID_STEP = 0.1 * (1 * 1 + 2 * 2 + 3 * 3 + 4 * 4) / 10
"""How far FedAvgAndroid moves every element in one round (weights 1-4)."""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("legacy_raw")
    for name, source in SOURCES.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    # Imported here first, so that each simulation forks its worker from this process.
    load_app("raw_xgb_client:app", ClientApp, directory)
    load_app("raw_android_client:app", ClientApp, directory)
    yield directory
    for name in SOURCES:
        sys.modules.pop(name, None)


def simulate(app_dir: Path, client: str, strategy: str, saved: Path) -> tuple[str, list[bytes]]:
    run_simulation(
        "raw_server:app",
        f"raw_{client}_client:app",
        4,
        backend_config={"num_workers": 1},
        run_config={"strategy": strategy, "save-to": str(saved)},
        directory=app_dir,
    )
    final = json.loads(saved.read_text())
    return final["type"], [bytes.fromhex(t) for t in final["tensors"]]


@pytest.mark.parametrize("strategy", ["FedXgbBagging", "FedXgbCyclic"])
def test_legacy_xgboost_strategy_runs_two_rounds(
    app_dir: Path, tmp_path: Path, strategy: str
) -> None:
    tensor_type, tensors = simulate(app_dir, "xgb", strategy, tmp_path / "final.json")
    assert tensor_type == ""
    # Read as JSON: xgboost's OpenMP threads in this process would make later forks unsafe.
    model = json.loads(tensors[0])["learner"]["gradient_booster"]["model"]
    # Bagging: 4 first trees, then one new tree per client; cyclic: one client a round.
    expected = 8 if strategy == "FedXgbBagging" else 2
    assert int(model["gbtree_model_param"]["num_trees"]) == expected
    assert model["iteration_indptr"] == list(range(expected + 1))


def test_fedavg_android_runs_two_rounds(app_dir: Path, tmp_path: Path) -> None:
    tensor_type, tensors = simulate(app_dir, "android", "FedAvgAndroid", tmp_path / "final.json")
    assert tensor_type == "numpy.nda"
    w, b = (np.frombuffer(t, np.float32) for t in tensors)
    np.testing.assert_allclose(w, np.full(6, -2 * ANDROID_STEP), rtol=1e-6)
    np.testing.assert_allclose(b, np.full(4, 1 - 2 * ANDROID_STEP), rtol=1e-6)


@pytest.mark.parametrize("tensor_type", ["", "numpy.nda", "custom"])
def test_opaque_tensors_keep_their_bytes_and_type(tensor_type: str) -> None:
    tensors = [b"", b'{"learner": 1}', bytes(range(256))]
    record = parameters_to_arrayrecord(Parameters(tensors, tensor_type))
    assert RAW_TENSOR_TYPE_KEY in record
    back = arrayrecord_to_parameters(record)
    assert (back.tensors, back.tensor_type) == (tensors, tensor_type)


def test_npy_tensors_still_travel_as_arrays() -> None:
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)]
    record = parameters_to_arrayrecord(ndarrays_to_parameters(arrays))
    assert RAW_TENSOR_TYPE_KEY not in record
    assert [a.shape for a in record.values()] == [(2, 3), (2,)]
    back = parameters_to_ndarrays(arrayrecord_to_parameters(record))
    for ours, theirs in zip(back, arrays, strict=True):
        np.testing.assert_array_equal(ours, theirs)
