"""The ClientApp: trains and evaluates the global model on this node's digits."""

from __future__ import annotations

from stamen.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from stamen.clientapp import ClientApp

from app_pytorch.task import Net, load_data, num_examples, shuffle_seed
from app_pytorch.task import test as test_fn
from app_pytorch.task import train as train_fn

app = ClientApp()


def _partition(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on the local data; reply with it and the training loss."""
    model = Net()
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    partition_id, num_partitions = _partition(context)
    trainloader, _ = load_data(partition_id, num_partitions)
    config = msg.content.config_records["config"]
    server_round, lr = config["server-round"], config["lr"]
    assert isinstance(server_round, int)
    assert isinstance(lr, float)
    train_loss = train_fn(
        model,
        trainloader,
        epochs=int(context.run_config.get("local-epochs", 1)),
        lr=lr,
        seed=shuffle_seed(int(context.run_config.get("seed", 0)), partition_id, server_round),
    )
    metrics = MetricRecord({"train_loss": train_loss, "num-examples": num_examples(trainloader)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local test data."""
    model = Net()
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    partition_id, num_partitions = _partition(context)
    _, testloader = load_data(partition_id, num_partitions)
    eval_loss, eval_acc = test_fn(model, testloader)
    metrics = MetricRecord(
        {"eval_loss": eval_loss, "eval_acc": eval_acc, "num-examples": num_examples(testloader)}
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
