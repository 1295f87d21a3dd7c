"""The ClientApp: trains the global model on this node's partition of the digits."""

from __future__ import annotations

from typing import Any

from stamen.client import ClientApp, NumPyClient
from stamen.common import Context
from task import (
    Net,
    get_weights,
    load_data,
    num_examples,
    set_weights,
    shuffle_seed,
    test,
    train,
)


class FlowerClient(NumPyClient):
    def __init__(self, partition_id: int, num_partitions: int, epochs: int, lr: float, seed: int):
        self.net = Net()
        self.partition_id = partition_id
        self.trainloader, self.testloader = load_data(partition_id, num_partitions)
        self.epochs = epochs
        self.lr = lr
        self.seed = seed

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int, dict]:
        set_weights(self.net, parameters)
        seed = shuffle_seed(self.seed, self.partition_id, int(config.get("server-round", 0)))
        loss = train(self.net, self.trainloader, epochs=self.epochs, lr=self.lr, seed=seed)
        return get_weights(self.net), num_examples(self.trainloader), {"train_loss": loss}

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> tuple[float, int, dict]:
        set_weights(self.net, parameters)
        loss, accuracy = test(self.net, self.testloader)
        return loss, num_examples(self.testloader), {"accuracy": accuracy}


def client_fn(context: Context) -> Any:
    """One client per node: its partition from node_config, its training from run_config."""
    return FlowerClient(
        partition_id=int(context.node_config.get("partition-id", 0)),
        num_partitions=int(context.node_config.get("num-partitions", 1)),
        epochs=int(context.run_config.get("local-epochs", 1)),
        lr=float(context.run_config.get("lr", 0.03)),
        seed=int(context.run_config.get("seed", 0)),
    ).to_client()


app = ClientApp(client_fn=client_fn)
