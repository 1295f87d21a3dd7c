"""The ClientApp: trains and evaluates the global model on this node's digits."""

from __future__ import annotations

from stamen.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from stamen.clientapp import ClientApp

from app_numpy.task import evaluate as evaluate_model
from app_numpy.task import load_data, rng_for
from app_numpy.task import train as train_model

app = ClientApp()


def _partition(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on the local data; reply with it and the training loss."""
    partition_id, num_partitions = _partition(context)
    x_train, y_train, _, _ = load_data(partition_id, num_partitions)
    model = {key: array.numpy() for key, array in msg.content.array_records["arrays"].items()}
    config = msg.content.config_records["config"]
    server_round, lr = config["server-round"], config.get("lr", 0.5)
    assert isinstance(server_round, int)
    assert isinstance(lr, float)
    rng = rng_for(int(context.run_config.get("seed", 0)), partition_id, server_round)
    trained, loss = train_model(
        model,
        x_train,
        y_train,
        epochs=int(context.run_config.get("local-epochs", 1)),
        lr=lr,
        rng=rng,
    )
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(y_train)})
    content = RecordDict({"arrays": ArrayRecord(trained), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local test data."""
    partition_id, num_partitions = _partition(context)
    _, _, x_test, y_test = load_data(partition_id, num_partitions)
    model = {key: array.numpy() for key, array in msg.content.array_records["arrays"].items()}
    loss, accuracy = evaluate_model(model, x_test, y_test)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(y_test)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
