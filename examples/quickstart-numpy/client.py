"""The ClientApp: trains the global model on this node's partition of the digits."""

from __future__ import annotations

from typing import Any

from stamen.client import ClientApp, NumPyClient
from stamen.common import Context
from task import load_data, rng_for, test, train


class DigitsClient(NumPyClient):
    def __init__(self, partition_id: int, num_partitions: int, epochs: int, lr: float, seed: int):
        self.partition_id = partition_id
        self.x_train, self.y_train, self.x_test, self.y_test = load_data(
            partition_id, num_partitions
        )
        self.epochs = epochs
        self.lr = lr
        self.seed = seed

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int, dict]:
        rng = rng_for(self.seed, self.partition_id, int(config.get("server-round", 0)))
        weights, loss = train(
            parameters, self.x_train, self.y_train, epochs=self.epochs, lr=self.lr, rng=rng
        )
        return weights, len(self.y_train), {"train_loss": loss}

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> tuple[float, int, dict]:
        loss, accuracy = test(parameters, self.x_test, self.y_test)
        return loss, len(self.y_test), {"accuracy": accuracy}


def client_fn(context: Context) -> Any:
    """One client per node: its partition from node_config, its training from run_config."""
    return DigitsClient(
        partition_id=int(context.node_config.get("partition-id", 0)),
        num_partitions=int(context.node_config.get("num-partitions", 1)),
        epochs=int(context.run_config.get("local-epochs", 1)),
        lr=float(context.run_config.get("lr", 0.5)),
        seed=int(context.run_config.get("seed", 0)),
    ).to_client()


app = ClientApp(client_fn=client_fn)
