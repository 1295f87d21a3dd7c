"""A deployment end to end, with real processes on loopback: SuperLink, SuperNodes and the
ServerApp runner, over TLS, and what happens when one of them fails.

- quickstart-pytorch on 10 SuperNodes over TLS (the runner with an operator token) trains
  to an accuracy that no broken aggregation reaches, and every process exits cleanly;
- an insecure ServerApp runner or SuperNode is refused by a TLS SuperLink, in one line;
- a SuperNode killed mid-round is a failure of that round, reported within a few
  heartbeat intervals, and the run goes on;
- a SuperLink killed mid-round and restarted on its SQLite database loses nothing: the
  run ends with the same parameters as an undisturbed one.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from procs import (
    ROOT,
    Proc,
    Procs,
    SuperLink,
    parameters_digest,
    port_of,
    serverapp_args,
    start_supernodes,
    superlink_args,
    supernode_args,
    terminate_all,
)
from stamen.auth.tokens import hash_token

pytestmark = pytest.mark.integration

PYTORCH = ROOT / "examples" / "quickstart-pytorch"

ACCURACY_THRESHOLD = 0.8
"""quickstart-pytorch on 10 partitions reaches 0.86 after 3 rounds of FedAvg (measured with
the example's own task.py). The initial model scores 0.09 and one node's model trained
alone for 3 rounds 0.66-0.75, so an aggregation that ignores the updates or keeps only
one node's stays below this. test_parity.py pins the exact result."""

HEARTBEAT = 1.0
"""Seconds between heartbeats where a test waits for a node to be declared offline."""

# A numpy app with knobs: fit sleeps for run-config "fit-sleep" seconds (so a kill lands
# mid-round), its update depends on the partition (so aggregation matters), and the
# server saves the global parameters of every round to run-config "save-to", if given.
_CLIENT_APP = """
import time

import numpy as np
from stamen.client import ClientApp, NumPyClient
from stamen.common import Context


class SlowClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        time.sleep(float(config["fit-sleep"]))
        step = np.float64(self.partition + 1) / 7.0
        return [p * 0.9 + step for p in parameters], self.partition + 1, {}

    def evaluate(self, parameters, config):
        return float(sum(np.sum(p) for p in parameters)), 1, {}


def client_fn(context: Context):
    return SlowClient(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn)
"""

_SERVER_APP = """
import numpy as np
from stamen.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from stamen.server import ServerApp, ServerAppComponents, ServerConfig
from stamen.server.strategy import FedAvg


class SavingFedAvg(FedAvg):
    def __init__(self, save_to: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_to = save_to

    def aggregate_fit(self, server_round, results, failures):
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None and self.save_to:
            np.savez(self.save_to, *parameters_to_ndarrays(parameters))
        return parameters, metrics


def server_fn(context: Context) -> ServerAppComponents:
    config = context.run_config
    nodes = int(config["num-nodes"])
    strategy = SavingFedAvg(
        str(config.get("save-to", "")),
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=nodes,
        min_available_clients=nodes,
        on_fit_config_fn=lambda server_round: {"fit-sleep": float(config["fit-sleep"])},
        initial_parameters=ndarrays_to_parameters(
            [np.linspace(0.0, 1.0, 12).reshape(3, 4), np.arange(5, dtype=np.float64)]
        ),
    )
    rounds = int(config["num-server-rounds"])
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
"""


@pytest.fixture
def test_app(tmp_path: Path) -> Path:
    """A directory holding the slow numpy app: client:app and server:app."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "client.py").write_text(_CLIENT_APP)
    (directory / "server.py").write_text(_SERVER_APP)
    return directory


def history(log: str, section: str) -> dict[str, dict[int, float]]:
    """One section of the History that the ServerApp logs at the end, e.g.
    "metrics, distributed, evaluate" -> {"accuracy": {1: 0.72, 2: 0.83, 3: 0.86}}."""
    found: dict[str, dict[int, float]] = {}
    inside = False
    name = ""
    for line in log.splitlines():
        message = line.split(": ", 1)[1] if ": " in line else line
        if message.startswith("History ("):
            inside = message == f"History ({section}):"
            continue
        if not inside:
            continue
        value = re.fullmatch(r"\t\tround (\d+): (\S+)", message)
        if value:
            found[name][int(value.group(1))] = float(value.group(2))
        elif re.fullmatch(r"\t(\S+):", message):
            name = message.strip().rstrip(":")
            found[name] = {}
        else:
            inside = False
    return found


def test_quickstart_pytorch_over_tls_with_ten_supernodes(
    procs: Procs, certs: Path, tmp_path: Path
) -> None:
    # README "Deployment (TLS)": with TLS the operator APIs require a token.
    (tmp_path / "operator.token").write_text("a-token\n")
    (tmp_path / "operators.txt").write_text(f"operator:{hash_token('a-token')}\n")
    tokens = ["--auth-operator-tokens", str(tmp_path / "operators.txt")]
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=certs, extra=tokens)))
    nodes = start_supernodes(procs, 10, "client:app", PYTORCH, link.fleet, certs=certs)
    server = procs.start(
        "serverapp",
        [
            *serverapp_args(
                "server:app",
                PYTORCH,
                link.serverappio,
                certs=certs,
                run_config="num-server-rounds=3",
            ),
            "--operator-token-file",
            str(tmp_path / "operator.token"),
        ],
    )
    assert server.wait(timeout=120) == 0, server.tail()

    assert len(server.matches(r"aggregate_fit: received 10 results and 0 failures")) == 3
    accuracy = history(server.output(), "metrics, distributed, evaluate")["accuracy"]
    assert sorted(accuracy) == [1, 2, 3]
    assert accuracy[3] > ACCURACY_THRESHOLD, accuracy
    link.proc.wait_for(r"run \d+ finished \(completed\)", timeout=5)
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()


@pytest.mark.parametrize("service", ["serverapp", "supernode"])
def test_an_insecure_client_is_refused_by_a_tls_superlink(
    procs: Procs, certs: Path, test_app: Path, service: str
) -> None:
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=certs)))
    if service == "serverapp":
        argv = serverapp_args(
            "server:app", test_app, link.serverappio, certs=None, run_config="num-server-rounds=1"
        )
    else:
        argv = supernode_args(
            "client:app", test_app, link.fleet, certs=None, node_config="partition-id=0"
        )
    client = procs.start(service, argv)
    started = time.monotonic()
    code = client.wait(timeout=20)
    elapsed = time.monotonic() - started
    assert code != 0, client.tail()
    errors = [line for line in client.output().splitlines() if ": error: " in line]
    assert len(errors) == 1, client.tail()
    assert "TLS" in errors[0], errors[0]
    assert elapsed < 15, f"refused only after {elapsed:.1f}s"
    assert link.proc.terminate() == 0, link.proc.tail()


def test_a_supernode_killed_mid_round_is_one_failure_of_that_round(
    procs: Procs, test_app: Path
) -> None:
    link = SuperLink.started(
        procs.start(
            "superlink",
            superlink_args(certs=None, extra=["--heartbeat-interval", str(HEARTBEAT)]),
        )
    )
    nodes = start_supernodes(procs, 3, "client:app", test_app, link.fleet, certs=None)
    run_config = "num-server-rounds=1 num-nodes=3 fit-sleep=2"
    server = procs.start(
        "serverapp",
        serverapp_args("server:app", test_app, link.serverappio, certs=None, run_config=run_config),
    )
    for node in nodes:
        node.wait_for(r"received train message")
    nodes[0].kill()
    killed = time.monotonic()

    server.wait_for(r"aggregate_fit: received 2 results and 1 failures", timeout=20 * HEARTBEAT)
    elapsed = time.monotonic() - killed
    assert elapsed < 6 * HEARTBEAT, f"the failure came {elapsed:.1f}s after the kill"
    (failure,) = server.wait_for(r"round 1 fit failure: (.*)", timeout=5)
    assert "offline" in failure.group(1), failure.group(0)
    assert server.wait(timeout=30) == 0, server.tail()
    assert terminate_all(nodes[1:]) == {node.name: 0 for node in nodes[1:]}
    assert link.proc.terminate() == 0, link.proc.tail()


def test_a_superlink_restarted_mid_run_loses_nothing(
    procs: Procs, test_app: Path, tmp_path: Path
) -> None:
    database = str(tmp_path / "superlink.db")
    first = SuperLink.started(
        procs.start("superlink", superlink_args(certs=None, database=database))
    )
    nodes = start_supernodes(procs, 3, "client:app", test_app, first.fleet, certs=None)

    def serverapp(name: str, fit_sleep: float) -> tuple[Path, Proc]:
        saved = tmp_path / f"{name}.npz"
        run_config = f'num-server-rounds=3 num-nodes=3 fit-sleep={fit_sleep} save-to="{saved}"'
        argv = serverapp_args(
            "server:app", test_app, first.serverappio, certs=None, run_config=run_config
        )
        return saved, procs.start(name, argv)

    undisturbed, server = serverapp("undisturbed", 0.0)
    assert server.wait(timeout=60) == 0, server.tail()

    restarted, server = serverapp("restarted", 1.5)
    (started,) = server.wait_for(r"run (\d+): starting ServerApp")
    run_id = started.group(1)
    for node in nodes:  # all of them train in round 2
        node.wait_for(rf"received train message \S+ for run {run_id}", count=2)
    first.proc.kill()
    for node in nodes:  # their replies to round 2 wait for the SuperLink to come back
        node.wait_for(r"lost the connection to the SuperLink", timeout=30)
    ports = (port_of(first.fleet), port_of(first.serverappio), port_of(first.control))
    second = SuperLink.started(
        procs.start(
            "superlink-again",
            superlink_args(certs=None, database=database, ports=ports),
        )
    )
    assert server.wait(timeout=60) == 0, server.tail()

    assert len(server.matches(r"aggregate_fit: received 3 results and 0 failures")) == 3
    assert parameters_digest(restarted) == parameters_digest(undisturbed)
    second.proc.wait_for(rf"run {run_id} finished \(completed\)", timeout=5)
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert second.proc.terminate() == 0, second.proc.tail()
