"""Today's Flower app shape, with flwr imports (run with --flwr-compat): a Message-API
ClientApp and a ServerApp main that runs `FedAvg().start(...)`.

Node p adds lr * (p + 1) to the model and weighs its reply p + 1; the final model goes
to the run config's "out" file.
"""

import json

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    lr = float(msg.content["config"]["lr"])
    model = {k: a.numpy() + lr * (partition + 1) for k, a in msg.content["arrays"].items()}
    metrics = MetricRecord({"train_loss": float(partition), "num-examples": partition + 1})
    return Message(
        content=RecordDict({"arrays": ArrayRecord(model), "metrics": metrics}), reply_to=msg
    )


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    total = float(sum(a.numpy().sum() for a in msg.content["arrays"].values()))
    metrics = MetricRecord({"eval_loss": total, "num-examples": 1})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_available_nodes=3)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({"w": np.zeros(2, dtype=np.float32)}),
        train_config=ConfigRecord({"lr": 0.5}),
        num_rounds=int(context.run_config["num-server-rounds"]),
    )
    with open(str(context.run_config["out"]), "w") as out:
        json.dump({"w": result.arrays["w"].numpy().tolist()}, out)
