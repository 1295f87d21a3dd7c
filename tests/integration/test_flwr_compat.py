"""Flower 1.42 apps, unedited (`import flwr...`), run by Stamen's CLIs with --flwr-compat.

The apps in `flwr_apps/` are written in Flower's own style: a Message-API ClientApp with
`@app.train()`/`@app.evaluate()` and a lifespan (with its own server loop, and with
`FedAvg().start(...)`), a legacy NumPyClient with `ServerApp(server_fn=...)`, and custom
mods with a LegacyContext/DefaultWorkflow main.
Each server writes what it saw to the run config's "out" file, checked exactly here:
in simulation (workers forked from the CLI, and workers from a forkserver), and in a
deployment where the SuperNodes' worker processes import the app too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from procs import Procs, SuperLink, serverapp_args, start_supernodes, superlink_args

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

APPS = Path(__file__).parent / "flwr_apps"

MESSAGE_API_RESULT = {
    # Each round adds sum(w * 0.5 * w) / sum(w) = 7/6 over weights 1, 2, 3.
    "model": [7 / 3] * 3,
    "rounds_seen": [[1, 1, 1], [2, 2, 2]],
    "lifespan": [1, 1, 1],
    "totals": [7.0, 7.0, 7.0],
}


def simulation(app: str, out: Path, *extra: str) -> list[str]:
    return [
        "stamen-simulation", "--flwr-compat",
        "--server-app", f"{app}:server", "--client-app", f"{app}:app",
        "--num-supernodes", "3", "--dir", str(APPS),
        "--run-config", f"num-server-rounds=2 out={out}", *extra,
    ]  # fmt: skip


def check_message_api(result: dict[str, object]) -> None:
    assert result["model"] == pytest.approx(MESSAGE_API_RESULT["model"], rel=1e-6)
    assert {k: v for k, v in result.items() if k != "model"} == {
        k: v for k, v in MESSAGE_API_RESULT.items() if k != "model"
    }


@pytest.mark.parametrize(
    "backend",
    [
        [],  # single-threaded workers: forked from the CLI after it imported the app
        ["--backend-config", '{"num_workers": 1, "client_resources": {"num_cpus": 2}}'],
    ],
    ids=["forked", "forkserver"],
)
def test_a_message_api_app_runs_unedited(procs: Procs, tmp_path: Path, backend: list[str]) -> None:
    out = tmp_path / "out.json"
    proc = procs.start("simulation", simulation("message_api", out, *backend))
    assert proc.wait(timeout=120) == 0, proc.tail()
    check_message_api(json.loads(out.read_text()))


def test_a_fedavg_start_app_runs_unedited(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = procs.start("simulation", simulation("strategy_api", out))
    assert proc.wait(timeout=120) == 0, proc.tail()
    # FedAvg weighs node p's +0.5 * (p + 1) by p + 1: 7/6 a round.
    assert json.loads(out.read_text())["w"] == pytest.approx([7 / 3, 7 / 3], rel=1e-6)


def test_a_legacy_numpyclient_app_runs_unedited(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = procs.start("simulation", simulation("legacy", out))
    assert proc.wait(timeout=120) == 0, proc.tail()
    # FedAvg over weights 1, 2, 3 of updates +1, +2, +3: 14/6 a round.
    assert json.loads(out.read_text()) == pytest.approx([14 / 3, 14 / 3])
    lines = proc.output().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("round "))
    assert lines[header].split()[:3] == ["round", "loss", "accuracy"]
    # accuracies 0.5, 0.6, 0.7 over one example each, through the weighted_average
    assert [row.split()[2] for row in lines[header + 1 :]] == ["0.6", "0.6"]


def test_mods_and_the_default_workflow_run_unedited(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = procs.start("simulation", simulation("mods_workflow", out))
    assert proc.wait(timeout=120) == 0, proc.tail()
    # Each round: +1 by the client, then doubled by the mod: 0 -> 2 -> 6.
    assert json.loads(out.read_text()) == {"model": [6.0, 6.0], "losses": [4.0, 12.0]}


def test_without_the_flag_a_flower_app_does_not_load(procs: Procs, tmp_path: Path) -> None:
    argv = [a for a in simulation("legacy", tmp_path / "out.json") if a != "--flwr-compat"]
    proc = procs.start("simulation", argv)
    assert proc.wait(timeout=60) == 2
    assert proc.matches(r"stamen-simulation: error: cannot load app .*No module named 'flwr'")


def test_a_deployment_runs_the_message_api_app_unedited(procs: Procs, tmp_path: Path) -> None:
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None)))
    nodes = start_supernodes(
        procs,
        3,
        "message_api:app",
        APPS,
        link.fleet,
        certs=None,
        env={"STAMEN_FLWR_COMPAT": "1"},  # the flag, through its environment variable
    )
    out = tmp_path / "out.json"
    argv = serverapp_args(
        "message_api:server",
        APPS,
        link.serverappio,
        certs=None,
        run_config=f"num-server-rounds=2 out={out}",
    )
    server = procs.start("serverapp", [*argv, "--flwr-compat"])
    assert server.wait(timeout=120) == 0, server.tail()
    check_message_api(json.loads(out.read_text()))
    for node in nodes:
        assert node.terminate() == 0, node.tail()
    assert link.proc.terminate() == 0, link.proc.tail()
