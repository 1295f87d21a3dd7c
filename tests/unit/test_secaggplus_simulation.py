"""SecAgg+ in a real in-process simulation: a dropout mid-round, and the fl-dp-sa shape.

Partition i fits to [0.1 (i+1), ...] with weight i+1. The ClientApp's first mod makes
the partition named in the run config fail at the named stage, as a node that dies.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from stamen.client import ClientApp
from stamen.common.loading import load_app
from stamen.simulation import run_simulation

pytestmark = pytest.mark.timeout(90)

CLIENT = """
import numpy as np
from stamen.client import ClientApp, NumPyClient
from stamen.client.mod import fixedclipping_mod, secaggplus_mod
from stamen.common.secure_aggregation import RECORD_KEY_CONFIGS, Key


class Shift(NumPyClient):
    def __init__(self, pid):
        self.pid = pid

    def fit(self, parameters, config):
        return [p + 0.1 * (self.pid + 1) for p in parameters], self.pid + 1, {}


def dropping(msg, context, call_next):
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    pid = int(context.node_config["partition-id"])
    if (
        configs is not None
        and pid == int(context.run_config.get("drop-partition", -1))
        and configs[Key.STAGE] == context.run_config.get("drop-stage", "")
    ):
        raise RuntimeError("this node dies")
    return call_next(msg, context)


def client_fn(context):
    return Shift(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[dropping, secaggplus_mod])
dp_app = ClientApp(client_fn=client_fn, mods=[dropping, secaggplus_mod, fixedclipping_mod])
"""

SERVER = """
import numpy as np
from stamen.common import Context, ndarrays_to_parameters
from stamen.server import Grid, LegacyContext, ServerApp, ServerConfig
from stamen.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from stamen.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    nodes = int(context.run_config["nodes"])
    strategy = FedAvg(
        initial_parameters=ndarrays_to_parameters([np.zeros(10, np.float32)]),
        min_fit_clients=nodes,
        min_available_clients=nodes,
        fraction_evaluate=0.0,
    )
    if context.run_config["dp"]:  # like Flower's, it skips a round that had failures
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy,
            noise_multiplier=float(context.run_config["noise"]),
            clipping_norm=float(context.run_config["clipping-norm"]),
            num_sampled_clients=nodes,
        )
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
    workflow = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2, max_weight=10.0)
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    final = legacy.state.array_records["parameters"].to_numpy_ndarrays()
    np.save(context.run_config["save-to"], final[0])
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("secaggplus")
    (directory / "sa_client.py").write_text(textwrap.dedent(CLIENT))
    (directory / "sa_server.py").write_text(textwrap.dedent(SERVER))
    # Imported here first, so that the simulation forks its worker from this process.
    load_app("sa_client:app", ClientApp, directory)
    load_app("sa_client:dp_app", ClientApp, directory)
    yield directory
    for name in ("sa_client", "sa_server"):
        sys.modules.pop(name, None)


def simulate(app_dir: Path, tmp_path: Path, **config: object) -> np.ndarray:
    saved = tmp_path / "model.npy"
    run_config = {"nodes": 5, "dp": False, "noise": 0.0, "clipping-norm": 1.0}
    run_config["save-to"] = str(saved)
    run_config.update(config)  # type: ignore[arg-type]
    run_simulation(
        "sa_server:app",
        "sa_client:dp_app" if config.get("dp") else "sa_client:app",
        5,
        backend_config={"num_workers": 1},
        run_config=run_config,  # type: ignore[arg-type]
        directory=app_dir,
    )
    return np.load(saved)


def test_a_node_dying_mid_round_leaves_the_average_of_the_others(
    app_dir: Path, tmp_path: Path
) -> None:
    model = simulate(
        app_dir, tmp_path, **{"drop-partition": 2, "drop-stage": "collect_masked_vectors"}
    )
    pids = [0, 1, 3, 4]
    want = sum(0.1 * (p + 1) * (p + 1) for p in pids) / sum(p + 1 for p in pids)
    # One quantization level (16 / 2**22) per node, times max_weight / total weight.
    np.testing.assert_allclose(model, want, atol=4 * 16 / 2**22 * 10 / 12 + 1e-5, rtol=0)


def test_fl_dp_sa_shape_clips_on_the_nodes_and_aggregates_securely(
    app_dir: Path, tmp_path: Path
) -> None:
    norm = 0.5  # updates of norm 0.1 (i+1) sqrt(10): partition 0 is not clipped, others are
    model = simulate(app_dir, tmp_path, **{"dp": True, "clipping-norm": norm})
    clipped = [min(0.1 * (p + 1), norm / np.sqrt(10)) for p in range(5)]
    want = sum(c * (p + 1) for p, c in enumerate(clipped)) / 15
    np.testing.assert_allclose(model, want, atol=5 * 16 / 2**22 * 10 / 15 + 1e-5, rtol=0)
    noisy = simulate(app_dir, tmp_path, **{"dp": True, "clipping-norm": norm, "noise": 1.0})
    assert np.isfinite(noisy).all()
    assert not np.allclose(noisy, want, atol=1e-3)
