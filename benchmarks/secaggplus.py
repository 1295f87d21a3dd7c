"""One SecAgg+ fit round, Stamen vs Flower 1.42, every node in this process.

    .venv/bin/python benchmarks/secaggplus.py stamen 100 1000000
    benchmarks/.venv-flower/bin/python benchmarks/secaggplus.py flower 100 1000000

Each framework's own `secaggplus_mod` ClientApp and `SecAggPlusWorkflow` run over a
minimal synchronous in-memory grid (no transport, no serialization), so the figure is
the protocol's compute: key agreement, sharing, quantization, masking, unmasking, for all
nodes and the server together. Prints one JSON line: seconds for the round and the
process's peak RSS. Run each case in a fresh process.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from typing import Any

import numpy as np

NUM_SHARES = 5
THRESHOLD = 3


NAMES = {
    # name: (Stamen's module, Flower's module)
    "ArrayRecord": ("stamen.common.records", "flwr.app"),
    "ClientApp": ("stamen.client", "flwr.client"),
    "ClientProxy": ("stamen.server.client_proxy", "flwr.server.compat.grid_client_proxy"),
    "ConfigRecord": ("stamen.common.records", "flwr.app"),
    "Context": ("stamen.common", "flwr.app"),
    "FedAvg": ("stamen.server.strategy", "flwr.server.strategy"),
    "LegacyContext": ("stamen.server", "flwr.server"),
    "Message": ("stamen.common.message", "flwr.app"),
    "NumPyClient": ("stamen.client", "flwr.client"),
    "RecordDict": ("stamen.common.records", "flwr.app"),
    "SecAggPlusWorkflow": ("stamen.server.workflow", "flwr.server.workflow"),
    "ServerConfig": ("stamen.server", "flwr.server"),
    "ndarrays_to_parameters": ("stamen.common", "flwr.common"),
    "secaggplus_mod": ("stamen.client.mod", "flwr.client.mod"),
}


def framework(name: str) -> dict[str, Any]:
    """The names above from one framework (Flower's proxy class is GridClientProxy)."""
    found = {}
    for key, modules in NAMES.items():
        module = importlib.import_module(modules[name == "flower"])
        attribute = "GridClientProxy" if key == "ClientProxy" and name == "flower" else key
        found[key] = getattr(module, attribute)
    return found


def main(name: str, clients: int, params: int) -> None:
    f = framework(name)

    class Client(f["NumPyClient"]):  # type: ignore[misc]
        def fit(self, parameters: Any, config: Any) -> Any:
            return [p + 0.01 for p in parameters], 10, {}

    app = f["ClientApp"](client_fn=lambda context: Client().to_client(), mods=[f["secaggplus_mod"]])
    node_ids = list(range(1, clients + 1))
    contexts = {n: f["Context"](1, n, {}, f["RecordDict"](), {}) for n in node_ids}

    class Grid:
        run = None

        def create_message(self, content, message_type, dst_node_id, group_id="", ttl=None):  # type: ignore[no-untyped-def]
            return f["Message"](content, dst_node_id, message_type, group_id=group_id)

        def get_node_ids(self) -> list[int]:
            return node_ids

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
            replies = []
            for message in messages:
                if name == "flower":  # what Flower's push and SuperNode set
                    from flwr.supercore.task_identity import TaskIdentity

                    message.metadata._message_id = message.object_id
                    TaskIdentity.node_id = message.metadata.dst_node_id
                # Fresh config records, as a transport delivers: Flower's mod pops keys
                # off its input, and Flower's setup stage shares one record between nodes.
                message.content = f["RecordDict"](
                    {
                        k: f["ConfigRecord"](dict(v)) if isinstance(v, f["ConfigRecord"]) else v
                        for k, v in message.content.items()
                    }
                )
                replies.append(app(message, contexts[message.metadata.dst_node_id]))
                if name == "flower":
                    TaskIdentity.node_id = 0
            return replies

    grid = Grid()
    if name == "flower":
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id = 1  # what Flower's ServerApp runner sets
        TaskIdentity.task_id = 1
        TaskIdentity.node_id = 0
    initial = [np.zeros(params, np.float32)]
    strategy = f["FedAvg"](
        initial_parameters=f["ndarrays_to_parameters"](initial),
        min_fit_clients=clients,
        min_available_clients=clients,
        fraction_evaluate=0.0,
    )
    context = f["Context"](0, 0, {}, f["RecordDict"](), {})
    legacy = f["LegacyContext"](context, config=f["ServerConfig"](num_rounds=1), strategy=strategy)
    for n in node_ids:
        proxy = f["ClientProxy"](n, grid, 1) if name == "flower" else f["ClientProxy"](n, {}, grid)
        legacy.client_manager.register(proxy)
    legacy.state.array_records["parameters"] = f["ArrayRecord"](initial)
    legacy.state.config_records["config"] = f["ConfigRecord"]({"current_round": 1})
    workflow = f["SecAggPlusWorkflow"](num_shares=NUM_SHARES, reconstruction_threshold=THRESHOLD)
    start = time.perf_counter()
    workflow(grid, legacy)
    took = time.perf_counter() - start
    final = legacy.state.array_records["parameters"].to_numpy_ndarrays()[0]
    assert abs(float(final.mean()) - 0.01) < 1e-3, final.mean()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "framework": name,
                "clients": clients,
                "params": params,
                "round_s": round(took, 2),
                "peak_rss_mib": round(peak_mib),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
