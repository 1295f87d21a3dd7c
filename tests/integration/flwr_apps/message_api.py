"""A Message-API app in Flower 1.42's own style, with flwr imports (run with --flwr-compat).

Each node adds lr * (partition + 1) to the model and counts its rounds in its Context
state; the server's own loop weights the replies by "num-examples" and writes what it saw
to the run config's "out" file.
"""

import json

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

app = ClientApp()


@app.lifespan()
def lifespan(context: Context):
    context.state["lifespan"] = ConfigRecord({"entered": True})
    yield


@app.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    lr = float(msg.content["config"]["lr"])
    # The Context's state persists across rounds, written through its live views.
    rounds = context.state.metric_records.get("rounds", MetricRecord({"n": 0}))
    rounds["n"] = int(rounds["n"]) + 1
    context.state.metric_records["rounds"] = rounds
    model = ArrayRecord([a + lr * (partition + 1) for a in arrays])
    metrics = MetricRecord(
        {
            "num-examples": partition + 1,
            "rounds-seen": rounds["n"],
            "lifespan": int(bool(context.state.config_records["lifespan"]["entered"])),
        }
    )
    return Message(content=RecordDict({"arrays": model, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    total = float(sum(a.sum() for a in msg.content["arrays"].to_numpy_ndarrays()))
    metrics = MetricRecord({"num-examples": 1, "total": total})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    arrays = ArrayRecord([np.zeros(3, dtype=np.float32)])
    seen = []
    for server_round in range(1, num_rounds + 1):
        nodes = sorted(grid.get_node_ids())
        config = ConfigRecord({"lr": 0.5})
        messages = [
            Message(
                RecordDict({"arrays": arrays, "config": config}),
                dst_node_id=node,
                message_type="train",
                group_id=str(server_round),
            )
            for node in nodes
        ]
        replies = [r for r in grid.send_and_receive(messages) if r.has_content()]
        weights = [float(r.content["metrics"]["num-examples"]) for r in replies]
        models = [r.content["arrays"].to_numpy_ndarrays()[0] for r in replies]
        average = sum(w * m for w, m in zip(weights, models, strict=True)) / sum(weights)
        arrays = ArrayRecord([average.astype(np.float32)])
        seen.append(sorted(int(r.content["metrics"]["rounds-seen"]) for r in replies))
        log(20, "round %d: %d replies", server_round, len(replies))
        lifespans = [int(r.content["metrics"]["lifespan"]) for r in replies]
    evaluation = grid.send_and_receive(
        [Message(RecordDict({"arrays": arrays}), node, "evaluate") for node in nodes]
    )
    totals = [float(r.content["metrics"]["total"]) for r in evaluation]
    result = {
        "model": arrays.to_numpy_ndarrays()[0].tolist(),
        "rounds_seen": seen,
        "lifespan": lifespans,
        "totals": totals,
    }
    with open(str(context.run_config["out"]), "w") as out:
        json.dump(result, out)
