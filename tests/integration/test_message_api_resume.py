"""A Message-API run whose runner is SIGKILLed mid-run resumes to the same final arrays.

examples/app-numpy (`FedAvg().start(...)`) on a SuperLink, 3 SuperNodes and the ServerApp
runner on loopback: one run goes undisturbed; another's runner is killed once round 2 is
checkpointed, and `stamen-serverapp --resume RUN_ID` (after the dead runner's lease, made
short with `--run-lease`, lapses) finishes it. Both save their final arrays to run-config
"save-to"; they must be equal bit for bit.
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
ROUNDS = 4


def runner_args(link: SuperLink, saved: Path, *extra: str) -> list[str]:
    run_config = f'num-server-rounds={ROUNDS} seed=5 min-available-nodes={NODES} save-to="{saved}"'
    argv = serverapp_args(
        "app_numpy.server_app:app", EXAMPLE, link.serverappio, certs=None, run_config=run_config
    )
    return [*argv, *extra]


def load(path: Path) -> dict[str, bytes]:
    with np.load(path) as arrays:
        return {key: arrays[key].tobytes() for key in arrays.files}


def test_a_killed_runner_resumes_start_to_the_uninterrupted_runs_arrays(
    procs: Procs, tmp_path: Path
) -> None:
    database = str(tmp_path / "state.db")
    link_argv = superlink_args(certs=None, database=database, extra=["--run-lease", "3"])
    link = SuperLink.started(procs.start("superlink", link_argv))
    nodes = start_supernodes(
        procs, NODES, "app_numpy.client_app:app", EXAMPLE, link.fleet, certs=None
    )
    whole = tmp_path / "whole.npz"
    server = procs.start("serverapp", runner_args(link, whole))
    assert server.wait(timeout=120) == 0, server.tail()

    resumed = tmp_path / "resumed.npz"
    doomed = procs.start("doomed-serverapp", runner_args(link, resumed))
    (started,) = doomed.wait_for(r"run (\d+): starting ServerApp", timeout=60)
    doomed.wait_for(r"\[ROUND 3/4\]", timeout=120)  # round 2 is checkpointed
    doomed.kill()
    assert not resumed.exists()

    again = procs.start("resumed-serverapp", runner_args(link, resumed, "--resume", started[1]))
    assert again.wait(timeout=120) == 0, again.tail()
    assert again.matches(r"Resuming from the checkpoint of round [23]")
    assert not again.matches(r"\[ROUND 1/4\]")
    assert load(resumed) == load(whole)
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()
