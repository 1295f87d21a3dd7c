"""A Message-API app deployed on real processes ends with the same model, bit for bit,
as in simulation: examples/app-numpy (`FedAvg().start(...)` in `@app.main()`) on a
SuperLink, 3 SuperNodes and the ServerApp runner on loopback, then with
`stamen-simulation --num-supernodes 3`. The ServerApp saves its final arrays to
run-config "save-to".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from procs import (
    ROOT,
    Procs,
    SuperLink,
    serverapp_args,
    start_supernodes,
    superlink_args,
    terminate_all,
)

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "app-numpy"
NODES = 3
ROUNDS = 3


def run_config(saved: Path) -> str:
    return f'num-server-rounds={ROUNDS} seed=5 min-available-nodes={NODES} save-to="{saved}"'


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return {key: arrays[key] for key in arrays.files}


def test_app_numpy_ends_bit_identical_in_deployment_and_simulation(
    procs: Procs, tmp_path: Path
) -> None:
    deployed = tmp_path / "deployed.npz"
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None)))
    nodes = start_supernodes(
        procs, NODES, "app_numpy.client_app:app", EXAMPLE, link.fleet, certs=None
    )
    argv = serverapp_args(
        "app_numpy.server_app:app",
        EXAMPLE,
        link.serverappio,
        certs=None,
        run_config=run_config(deployed),
    )
    server = procs.start("serverapp", argv)
    assert server.wait(timeout=90) == 0, server.tail()
    assert (
        len(server.matches(rf"aggregate_train: Received {NODES} results and 0 failures")) == ROUNDS
    )
    assert len(server.matches(r"Strategy execution finished in")) == 1
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()

    simulated = tmp_path / "simulated.npz"
    simulation = procs.start(
        "simulation",
        [
            "stamen-simulation",
            "--server-app", "app_numpy.server_app:app",
            "--client-app", "app_numpy.client_app:app",
            "--num-supernodes", str(NODES),
            "--dir", str(EXAMPLE),
            "--run-config", run_config(simulated),
        ],
    )  # fmt: skip
    assert simulation.wait(timeout=90) == 0, simulation.tail()

    ours, theirs = load(deployed), load(simulated)
    assert list(ours) == list(theirs) == ["weight", "bias"]
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype
        assert ours[key].tobytes() == theirs[key].tobytes(), key
