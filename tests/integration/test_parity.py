"""Simulation and deployment give the same model: examples/quickstart-pytorch run with
`stamen-simulation --num-supernodes 3` and on real processes (a SuperLink, 3 SuperNodes,
the ServerApp runner) ends with bit-identical global parameters.

The example's files are copied as they are next to a small ServerApp that wraps the
example's server_fn and saves the global parameters after every round (run-config
"save-to"); both worlds run that same directory.

The example pins torch to one thread (see its task.py): with torch's default of 2 threads
here, final parameters differed by up to 5e-6.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from procs import (
    ROOT,
    Procs,
    SuperLink,
    parameters_digest,
    serverapp_args,
    start_supernodes,
    superlink_args,
    terminate_all,
)

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "quickstart-pytorch"
NODES = 3
ROUNDS = 3

_SAVING_SERVER = '''
"""The example's ServerApp, saving the global parameters of every round to "save-to"."""

import numpy as np
from stamen.common import Context, parameters_to_ndarrays
from stamen.server import ServerApp, ServerAppComponents

import server as example


def server_fn(context: Context) -> ServerAppComponents:
    components = example.server_fn(context)
    strategy = components.strategy
    aggregate_fit = strategy.aggregate_fit

    def saving_aggregate_fit(server_round, results, failures):
        parameters, metrics = aggregate_fit(server_round, results, failures)
        if parameters is not None:
            np.savez(str(context.run_config["save-to"]), *parameters_to_ndarrays(parameters))
        return parameters, metrics

    strategy.aggregate_fit = saving_aggregate_fit
    return components


app = ServerApp(server_fn=server_fn)
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """The example's modules, unchanged, plus saving_server.py."""
    directory = tmp_path / "app"
    directory.mkdir()
    for module in EXAMPLE.glob("*.py"):
        shutil.copy(module, directory / module.name)
    (directory / "saving_server.py").write_text(_SAVING_SERVER)
    return directory


def run_config(saved: Path) -> str:
    return f'num-server-rounds={ROUNDS} save-to="{saved}"'


def test_simulation_and_deployment_end_with_identical_parameters(
    procs: Procs, app_dir: Path, tmp_path: Path
) -> None:
    deployed = tmp_path / "deployed.npz"
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None)))
    nodes = start_supernodes(procs, NODES, "client:app", app_dir, link.fleet, certs=None)
    argv = serverapp_args(
        "saving_server:app", app_dir, link.serverappio, certs=None, run_config=run_config(deployed)
    )
    server = procs.start("serverapp", argv)
    assert server.wait(timeout=90) == 0, server.tail()
    assert len(server.matches(rf"received {NODES} results and 0 failures")) == 2 * ROUNDS
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()

    simulated = tmp_path / "simulated.npz"
    simulation = procs.start(
        "simulation",
        [
            "stamen-simulation",
            "--server-app", "saving_server:app",
            "--client-app", "client:app",
            "--num-supernodes", str(NODES),
            "--dir", str(app_dir),
            "--run-config", run_config(simulated),
        ],
    )  # fmt: skip
    assert simulation.wait(timeout=90) == 0, simulation.tail()

    assert parameters_digest(simulated) == parameters_digest(deployed)
