"""The benchmark app, for Stamen and for Flower 1.42 alike.

One module for both frameworks, so the twins cannot drift: BENCH_FRAMEWORK picks the
imports, which is all that differs (Stamen mirrors Flower's API). Everything else is
task.py's model and data.
"""

from __future__ import annotations

import os
from typing import Any

if os.environ.get("BENCH_FRAMEWORK", "stamen") == "flower":
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
else:
    from stamen.client import ClientApp, NumPyClient
    from stamen.common import Context, ndarrays_to_parameters
    from stamen.server import ServerApp, ServerAppComponents, ServerConfig
    from stamen.server.strategy import FedAvg

from benchmarks.apps import task

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
FRACTION = float(os.environ.get("BENCH_FRACTION", "1.0"))
# Deployment: wait for every SuperNode before round 1 (they come up one by one).
MIN_NODES = int(os.environ.get("BENCH_MIN_NODES", "1"))


class BenchClient(NumPyClient):  # type: ignore[misc,unused-ignore]
    def __init__(self, pid: int, num: int) -> None:
        self.pid, self.num = pid, num

    def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
        return task.fit(parameters, self.pid, self.num, int(config.get("server_round", 1)))

    def evaluate(self, parameters: Any, config: dict[str, Any]) -> Any:
        loss, n, accuracy = task.evaluate(parameters, self.pid, self.num)
        return loss, n, {"accuracy": accuracy}


def client_fn(context: Context) -> Any:
    cfg = context.node_config
    return BenchClient(int(cfg["partition-id"]), int(cfg["num-partitions"])).to_client()


def weighted_accuracy(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    total = sum(n for n, _ in metrics)
    return {"accuracy": sum(n * float(m["accuracy"]) for n, m in metrics) / max(total, 1)}


def server_fn(context: Context) -> ServerAppComponents:
    strategy = FedAvg(
        fraction_fit=FRACTION,
        fraction_evaluate=FRACTION,
        min_fit_clients=1,
        min_evaluate_clients=1,
        min_available_clients=MIN_NODES,
        initial_parameters=ndarrays_to_parameters(task.initial_ndarrays()),
        on_fit_config_fn=lambda r: {"server_round": r},
        evaluate_metrics_aggregation_fn=weighted_accuracy,
    )
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=ROUNDS))


client = ClientApp(client_fn=client_fn)
server = ServerApp(server_fn=server_fn)
