"""A small deployment on loopback with its metrics and dashboard on, for the
observability tests: a SuperLink (heartbeats every second), two SuperNodes, and a numpy
app whose rounds take a little while (run config "fit-sleep") and report a loss and an
accuracy per round."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from procs import Proc, Procs, SuperLink, serverapp_args, superlink_args, supernode_args
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Deployment", "scrape", "start_deployment", "start_run", "write_app"]

HEARTBEAT = 1.0

CLIENT = """
import time

import numpy as np
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def __init__(self, partition):
        self.partition = partition

    def fit(self, parameters, config):
        time.sleep(float(config["fit-sleep"]))
        return [p * 0.5 + self.partition for p in parameters], 1, {}

    def evaluate(self, parameters, config):
        loss = float(np.abs(parameters[0]).mean())
        return loss, 1, {"accuracy": 1.0 / (1.0 + loss)}


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
    strategy = FedAvg(
        min_available_clients=2,
        on_fit_config_fn=lambda r: {"fit-sleep": float(config["fit-sleep"])},
        evaluate_metrics_aggregation_fn=average,
        initial_parameters=ndarrays_to_parameters([np.full(1000, 8.0)]),
    )
    rounds = int(config["num-server-rounds"])
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
"""


def write_app(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "client.py").write_text(CLIENT)
    (directory / "server.py").write_text(SERVER)
    return directory


@dataclass(frozen=True)
class Deployment:
    link: SuperLink
    metrics: str
    """The SuperLink's metrics address, HOST:PORT."""
    dashboard: str
    nodes: list[Proc]
    node_ids: list[int]
    node_metrics: list[str]
    app: Path


def start_deployment(procs: Procs, app: Path) -> Deployment:
    """The SuperLink with metrics and dashboard on ports it picks, and two SuperNodes
    (partition ids 0 and 1) with metrics, once both have registered."""
    extra = [
        "--heartbeat-interval", str(HEARTBEAT),
        "--metrics-address", "127.0.0.1:0",
        "--dashboard-address", "127.0.0.1:0",
    ]  # fmt: skip
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None, extra=extra)))
    (metrics,) = link.proc.wait_for(r"Prometheus metrics at http://(\S+)/metrics", timeout=1)
    (dashboard,) = link.proc.wait_for(r"dashboard at http://(\S+)/", timeout=1)
    nodes = []
    for partition in (0, 1):
        config = f"partition-id={partition} num-partitions=2"
        argv = supernode_args("client:app", app, link.fleet, certs=None, node_config=config)
        nodes.append(procs.start(f"supernode-{partition}", [*argv, "--metrics-address", "0"]))
    node_ids = [int(n.wait_for(r"registered as node (\d+)")[0].group(1)) for n in nodes]
    node_metrics = [
        n.wait_for(r"Prometheus metrics at http://(\S+)/metrics")[0].group(1) for n in nodes
    ]
    return Deployment(
        link, metrics.group(1), dashboard.group(1), nodes, node_ids, node_metrics, app
    )


def start_run(procs: Procs, deployment: Deployment, *, rounds: int, fit_sleep: float) -> Proc:
    run_config = f"num-server-rounds={rounds} fit-sleep={fit_sleep}"
    return procs.start(
        "serverapp",
        serverapp_args(
            "server:app",
            deployment.app,
            deployment.link.serverappio,
            certs=None,
            run_config=run_config,
        ),
    )


def scrape(address: str) -> dict[str, float]:
    """GET http://address/metrics, as {'name{label="value"}': value} (no labels: name)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values
