"""A legacy-API app in Flower 1.42's style, with flwr imports (run with --flwr-compat):
NumPyClient, ServerApp(server_fn=...) and the legacy FedAvg."""

import json

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context, Metrics, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg


class FlowerClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        return [p + self.partition + 1 for p in parameters], self.partition + 1, {}

    def evaluate(self, parameters, config):
        return float(parameters[0].sum()), 1, {"accuracy": 0.5 + 0.1 * self.partition}


def client_fn(context: Context):
    return FlowerClient(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn)


def weighted_average(metrics: list[tuple[int, Metrics]]) -> Metrics:
    examples = [n for n, _ in metrics]
    accuracies = [n * float(m["accuracy"]) for n, m in metrics]
    return {"accuracy": sum(accuracies) / sum(examples)}


class SavingFedAvg(FedAvg):
    """Writes each round's aggregate to the run config's "out" file."""

    out = ""

    def aggregate_fit(self, server_round, results, failures):
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        with open(self.out, "w") as out:
            json.dump(parameters_to_ndarrays(parameters)[0].tolist(), out)
        return parameters, metrics


def server_fn(context: Context) -> ServerAppComponents:
    strategy = SavingFedAvg(
        initial_parameters=ndarrays_to_parameters([np.zeros(2, dtype=np.float64)]),
        evaluate_metrics_aggregation_fn=weighted_average,
    )
    strategy.out = str(context.run_config["out"])
    config = ServerConfig(num_rounds=int(context.run_config["num-server-rounds"]))
    return ServerAppComponents(strategy=strategy, config=config)


server = ServerApp(server_fn=server_fn)
