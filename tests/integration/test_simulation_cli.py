"""`stamen-simulation` as a real process: exit codes, the summary table, and SIGTERM.

The app is numpy-only and written to a temporary directory. The SIGTERM test uses a
model large enough (800 KB) to travel through shared memory, and checks that stopping
leaves no process of the simulation's session and no segment of its pool behind.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from procs import Procs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CLIENT = """
import time

import numpy as np
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def __init__(self, partition):
        self.partition = partition

    def fit(self, parameters, config):
        time.sleep(float(config.get("sleep", 0.0)))
        return [p + self.partition for p in parameters], 1, {"partition": self.partition}

    def evaluate(self, parameters, config):
        return float(self.partition), 1, {"accuracy": 0.5}


def client_fn(context):
    return Client(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn)
"""

SERVER = """
import numpy as np
from stamen.common import ndarrays_to_parameters
from stamen.server import ServerApp, ServerAppComponents, ServerConfig
from stamen.server.strategy import FedAvg


def average(metrics):
    return {"accuracy": sum(m["accuracy"] for _, m in metrics) / len(metrics)}


def server_fn(context):
    config = context.run_config
    size = int(config.get("model-size", 10))
    strategy = FedAvg(
        min_available_clients=1,
        on_fit_config_fn=lambda r: {"sleep": float(config.get("sleep", 0.0))},
        evaluate_metrics_aggregation_fn=average,
        initial_parameters=ndarrays_to_parameters([np.zeros(size)]),
    )
    rounds = int(config.get("num-server-rounds", 2))
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "client.py").write_text(textwrap.dedent(CLIENT))
    (directory / "server.py").write_text(textwrap.dedent(SERVER))
    return directory


def simulation(app_dir: Path, *extra: str, nodes: int = 4) -> list[str]:
    return [
        "stamen-simulation",
        "--server-app", "server:app",
        "--client-app", "client:app",
        "--num-supernodes", str(nodes),
        "--dir", str(app_dir),
        *extra,
    ]  # fmt: skip


def test_a_run_ends_with_the_summary_table(procs: Procs, app_dir: Path) -> None:
    proc = procs.start("simulation", simulation(app_dir, "--seed", "7"))

    assert proc.wait(timeout=90) == 0, proc.tail()
    lines = proc.output().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("round "))
    assert lines[header].split() == ["round", "loss", "accuracy", "failures", "seconds"]
    # evaluate returns the partition id as the loss: the mean over partitions 0..3
    assert [row.split()[:4] for row in lines[header + 1 :]] == [
        ["1", "1.5", "0.5", "0"],
        ["2", "1.5", "0.5", "0"],
    ]
    assert proc.matches(r"\[ROUND 2\]")
    assert not proc.matches(r"node \d+ registered")  # per-node lines stay quiet at INFO


def test_output_dir_gets_the_history_csv_arrays_and_plot(
    procs: Procs, app_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results" / "run"
    model = tmp_path / "model.npz"
    proc = procs.start(
        "simulation",
        simulation(app_dir, "--output-dir", str(out), "--save-final-arrays", str(model)),
    )

    assert proc.wait(timeout=90) == 0, proc.tail()
    assert proc.matches(rf"results in {out}: history.json, metrics.csv, final_arrays.npz")
    history = json.loads((out / "history.json").read_text())
    assert history["losses_distributed"] == [[1, 1.5], [2, 1.5]]
    with (out / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["round"], r["loss_distributed"], r["evaluate_accuracy"]) for r in rows] == [
        ("1", "1.5", "0.5"),
        ("2", "1.5", "0.5"),
    ]
    with np.load(out / "final_arrays.npz") as saved:
        # each of partitions 0..3 adds its id to the zeros, every round: mean 1.5 twice
        np.testing.assert_allclose(saved["0"], np.full(10, 3.0))
    with np.load(model) as saved:  # --save-final-arrays: the same arrays, where asked
        np.testing.assert_allclose(saved["0"], np.full(10, 3.0))
    assert proc.matches(rf"final arrays saved to {model}")
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def test_the_dashboard_follows_a_simulation(procs: Procs, app_dir: Path) -> None:
    run_config = "num-server-rounds=30 sleep=0.1"
    argv = simulation(app_dir, "--run-config", run_config, "--dashboard-address", "0")
    proc = procs.start("simulation", argv)
    served = proc.wait_for(r"dashboard at (http://\S+/)")[0].group(1)
    proc.wait_for(r"\[ROUND 3\]")

    with urllib.request.urlopen(served + "api/state", timeout=10) as response:
        state = json.loads(response.read())

    (run,) = state["runs"]
    assert run["status"] == "running"
    assert run["num_rounds"] == 30
    assert [r["round"] for r in run["rounds"]][:2] == [1, 2]
    assert run["rounds"][0]["metrics"]["evaluate/accuracy"] == 0.5
    assert state["nodes_total"] == state["nodes_online"] == 4
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait() == 128 + signal.SIGINT.value, proc.tail()


def test_an_output_dir_that_is_a_file_is_bad_input(
    procs: Procs, app_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("")
    proc = procs.start("simulation", simulation(app_dir, "--output-dir", str(tmp_path / "taken")))

    assert proc.wait(timeout=60) == 2, proc.tail()
    assert proc.output().strip() == (
        f"stamen-simulation: error: --output-dir: '{tmp_path / 'taken'}' exists and is not a "
        "directory"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--server-app", "nowhere:app"],
            "stamen-simulation: error: cannot load app 'nowhere:app': no module named 'nowhere'",
        ),
        (
            ["--client-app", "client"],
            "stamen-simulation: error: --client-app: 'client' is not a 'module:attribute'",
        ),
        (
            ["--backend-config", '{"num_workers": 0}'],
            "stamen-simulation: error: --backend-config: num_workers: Input should be greater",
        ),
        (
            ["--backend-config", '{"client_resources": {"cpus": 2}}'],
            "stamen-simulation: error: --backend-config: client_resources.cpus: unknown key",
        ),
        (["--run-config", "rounds"], "stamen-simulation: error: --run-config: config entry"),
        (["--num-supernodes", "0"], "stamen-simulation: error: --num-supernodes: Input should"),
        (
            ["--save-final-arrays", "/nonexistent/folder/model.npz"],
            "stamen-simulation: error: --save-final-arrays: cannot write "
            "'/nonexistent/folder/model.npz': No such file or directory",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    procs: Procs, app_dir: Path, args: list[str], message: str
) -> None:
    argv = simulation(app_dir)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]

    proc = procs.start("simulation", argv)

    assert proc.wait(timeout=60) == 2, proc.tail()
    assert proc.output().splitlines() == [proc.output().splitlines()[0]]
    assert proc.output().startswith(message), proc.output()


def test_a_client_app_that_does_not_load_exits_2(procs: Procs, app_dir: Path) -> None:
    proc = procs.start("simulation", simulation(app_dir, "--client-app", "client:missing"))

    assert proc.wait(timeout=60) == 2, proc.tail()
    last = proc.output().splitlines()[-1]
    assert last.startswith("stamen-simulation: error: cannot load app 'client:missing'"), last


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_a_signal_stops_cleanly_leaving_no_process_or_segment(
    procs: Procs, app_dir: Path, signum: signal.Signals, to_group: bool
) -> None:
    run_config = "num-server-rounds=100 sleep=0.2 model-size=100000"
    proc = procs.start("simulation", simulation(app_dir, "--run-config", run_config))
    proc.wait_for(r"\[ROUND 2\]")
    session = {p.pid for p in psutil.process_iter() if _session_of(p.pid) == proc.pid}
    segments = f"stamen-{proc.pid}-"
    assert len(session) >= 3, "the CLI, its forkserver and workers should be running"
    assert _segments(segments), "the model should be in shared memory by round 2"

    if to_group:  # a terminal's Ctrl-C reaches every process of the group
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)

    assert proc.wait() == 128 + signum.value, proc.tail()
    assert proc.matches(rf"{signum.name}: stopping the simulation")
    assert proc.output().splitlines()[-1] == f"stamen-simulation: error: stopped by {signum.name}"
    deadline = time.monotonic() + 10.0
    while (left := [pid for pid in session if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"
    assert not _segments(segments)


def _session_of(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _segments(prefix: str) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


PYPROJECT = """
[project]
name = "app"
version = "1.0.0"

[tool.flwr.app.components]
serverapp = "server:app"
clientapp = "client:app"

[tool.flwr.app.config]
num-server-rounds = 1
sleep = 0.0
model-size = 10
"""


def test_the_pyproject_gives_the_apps_and_the_config(procs: Procs, app_dir: Path) -> None:
    (app_dir / "pyproject.toml").write_text(PYPROJECT)
    argv = ["stamen-simulation", "--num-supernodes", "2", "--dir", str(app_dir)]

    proc = procs.start("simulation", argv)

    assert proc.wait(timeout=90) == 0, proc.tail()
    assert proc.matches(r"\[ROUND 1\]")
    assert not proc.matches(r"\[ROUND 2\]")  # num-server-rounds = 1 from the pyproject


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--run-config", "num-server-round=2"],
            "stamen-simulation: error: --run-config: the app declares no key "
            "'num-server-round'; did you mean 'num-server-rounds'?",
        ),
        (
            ["--run-config", "num-server-rounds=2, sleep=1"],
            "stamen-simulation: error: --run-config: config entry 'num-server-rounds=2,': "
            "separate pairs with spaces",
        ),
    ],
)
def test_run_config_errors_name_the_key(
    procs: Procs, app_dir: Path, args: list[str], message: str
) -> None:
    (app_dir / "pyproject.toml").write_text(PYPROJECT)
    argv = ["stamen-simulation", "--num-supernodes", "2", "--dir", str(app_dir), *args]

    proc = procs.start("simulation", argv)

    assert proc.wait(timeout=60) == 2, proc.tail()
    assert len(proc.output().splitlines()) == 1
    assert proc.output().startswith(message), proc.output()


def test_no_app_and_no_pyproject_says_what_to_pass(procs: Procs, app_dir: Path) -> None:
    argv = ["stamen-simulation", "--num-supernodes", "2", "--dir", str(app_dir)]

    proc = procs.start("simulation", argv)

    assert proc.wait(timeout=60) == 2, proc.tail()
    assert proc.output().startswith("stamen-simulation: error: pass --server-app"), proc.output()
    assert len(proc.output().splitlines()) == 1
