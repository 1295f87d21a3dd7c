"""SecAgg+ in a deployment: real SuperLink, SuperNodes and ServerApp runner on loopback.

Five SuperNodes run a ClientApp behind `secaggplus_mod`; one is killed while it fits
(after it has shared its keys), so the server must rebuild its private key from the
survivors' shares to remove its pairwise masks. The aggregate must be the weighted
average of the four others, within quantization error. And the fl-dp-sa shape (client-side
fixed clipping under SecAgg+) clips on the nodes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from procs import Procs, SuperLink, serverapp_args, start_supernodes, superlink_args, terminate_all

pytestmark = pytest.mark.integration

HEARTBEAT = 1.0

_CLIENT_APP = """
import time

import numpy as np
from stamen.client import ClientApp, NumPyClient
from stamen.client.mod import fixedclipping_mod, secaggplus_mod
from stamen.common import Context


class SlowClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        time.sleep(float(config["fit-sleep"]))
        return [p + 0.1 * (self.partition + 1) for p in parameters], self.partition + 1, {}


def client_fn(context: Context):
    return SlowClient(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
dp_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, fixedclipping_mod])
"""

_SERVER_APP = """
import numpy as np
from stamen.common import Context, ndarrays_to_parameters
from stamen.server import Grid, LegacyContext, ServerApp, ServerConfig
from stamen.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from stamen.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvg(
        fraction_evaluate=0.0,
        min_fit_clients=5,
        min_available_clients=5,
        on_fit_config_fn=lambda server_round: {"fit-sleep": float(context.run_config["sleep"])},
        initial_parameters=ndarrays_to_parameters([np.zeros(8, np.float32)]),
    )
    if context.run_config["dp"]:  # Flower's fl-dp-sa shape
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, noise_multiplier=0.0, clipping_norm=0.5, num_sampled_clients=5
        )
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
    workflow = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2, max_weight=10.0)
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    final = legacy.state.array_records["parameters"].to_numpy_ndarrays()
    np.save(context.run_config["save-to"], final[0])
"""


def deploy(procs: Procs, tmp_path: Path, client: str, run_config: str) -> tuple[Any, ...]:
    """SuperLink, 5 SuperNodes running `client`, and the ServerApp; the model's path."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "client.py").write_text(_CLIENT_APP)
    (app / "server.py").write_text(_SERVER_APP)
    saved = tmp_path / "model.npy"
    link = SuperLink.started(
        procs.start(
            "superlink",
            superlink_args(certs=None, extra=["--heartbeat-interval", str(HEARTBEAT)]),
        )
    )
    nodes = start_supernodes(procs, 5, client, app, link.fleet, certs=None)
    config = f'save-to="{saved}" {run_config}'
    server = procs.start(
        "serverapp",
        serverapp_args("server:app", app, link.serverappio, certs=None, run_config=config),
    )
    return link, nodes, server, saved


def test_a_supernode_killed_mid_round_is_unmasked_from_the_survivors_shares(
    procs: Procs, tmp_path: Path
) -> None:
    link, nodes, server, saved = deploy(procs, tmp_path, "client:app", "sleep=3.0 dp=false")
    # The third train message is the fit (setup, share_keys, collect_masked_vectors).
    nodes[2].wait_for(r"received train message", count=3, timeout=60)
    time.sleep(0.5)
    nodes[2].kill()

    assert server.wait(timeout=60) == 0, server.tail()
    server.wait_for(r"Secure aggregation completed", timeout=1)
    server.wait_for(r"aggregate_fit: received 4 results and 1 failures", timeout=1)
    pids = [0, 1, 3, 4]
    want = sum(0.1 * (p + 1) * (p + 1) for p in pids) / sum(p + 1 for p in pids)
    np.testing.assert_allclose(np.load(saved), want, atol=4 * 16 / 2**22 * 10 / 12 + 1e-5)
    survivors = nodes[:2] + nodes[3:]
    assert terminate_all(survivors) == {node.name: 0 for node in survivors}
    assert link.proc.terminate() == 0, link.proc.tail()


def test_fl_dp_sa_shape_clips_on_the_nodes_in_a_deployment(procs: Procs, tmp_path: Path) -> None:
    link, nodes, server, saved = deploy(procs, tmp_path, "client:dp_app", "sleep=0.0 dp=true")
    assert server.wait(timeout=60) == 0, server.tail()
    # Updates of norm 0.1 (i+1) sqrt(8) clipped to 0.5: partition 0 is not clipped.
    clipped = [min(0.1 * (p + 1), 0.5 / np.sqrt(8)) for p in range(5)]
    want = sum(c * (p + 1) for p, c in enumerate(clipped)) / 15
    np.testing.assert_allclose(np.load(saved), want, atol=5 * 16 / 2**22 * 10 / 15 + 1e-5)
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()
