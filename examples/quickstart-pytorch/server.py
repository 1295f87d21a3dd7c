"""The ServerApp: FedAvg over every node, metrics weighted by each node's examples."""

from __future__ import annotations

from stamen.common import Context, ndarrays_to_parameters
from stamen.server import ServerApp, ServerAppComponents, ServerConfig
from stamen.server.strategy import FedAvg
from task import get_weights, initial_net


def weighted_average(metrics: list[tuple[int, dict]]) -> dict:
    """Each metric over all examples (accuracy, train_loss), not the mean of the nodes'."""
    examples = sum(n for n, _ in metrics)
    names = metrics[0][1].keys() if metrics else ()
    return {name: sum(n * float(m[name]) for n, m in metrics) / examples for name in names}


def fit_config(server_round: int) -> dict:
    """Tells each client the round, from which it seeds its shuffling."""
    return {"server-round": server_round}


def server_fn(context: Context) -> ServerAppComponents:
    seed = int(context.run_config.get("seed", 0))
    # Wait for this many nodes before round 1 (a deployment's nodes come up one by one).
    min_nodes = int(context.run_config.get("min-available-clients", 2))
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=min(2, min_nodes),
        min_evaluate_clients=min(2, min_nodes),
        min_available_clients=min_nodes,
        on_fit_config_fn=fit_config,
        fit_metrics_aggregation_fn=weighted_average,
        evaluate_metrics_aggregation_fn=weighted_average,
        initial_parameters=ndarrays_to_parameters(get_weights(initial_net(seed))),
    )
    num_rounds = int(context.run_config.get("num-server-rounds", 3))
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=num_rounds))


app = ServerApp(server_fn=server_fn)
