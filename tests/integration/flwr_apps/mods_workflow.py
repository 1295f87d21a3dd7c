"""Custom mods on a Flower ClientApp, and a ServerApp main that runs the legacy loop
through LegacyContext and DefaultWorkflow, in Flower 1.42's style with flwr imports."""

import json

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.client import ClientApp, NumPyClient
from flwr.clientapp.mod import Mod  # noqa: F401  (a Flower app may import the type)
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow


def count_calls(msg: Message, context: Context, call_next) -> Message:
    """A mod: counts the messages this node handled, in its state."""
    calls = context.state.config_records.get("calls", ConfigRecord({"n": 0}))
    calls["n"] = int(calls["n"]) + 1
    context.state.config_records["calls"] = calls
    return call_next(msg, context)


def double_update(msg: Message, context: Context, call_next) -> Message:
    """A mod: doubles every array of a train reply."""
    reply = call_next(msg, context)
    if msg.metadata.message_type == "train" and reply.has_content():
        for record in reply.content.array_records.values():
            for key in list(record.keys()):
                record[key] = type(record[key])(record[key].numpy() * 2)
    return reply


class FlowerClient(NumPyClient):
    def __init__(self, context: Context) -> None:
        self.context = context

    def fit(self, parameters, config):
        calls = int(self.context.state.config_records["calls"]["n"])
        return [p + 1 for p in parameters], 1, {"calls": calls}

    def evaluate(self, parameters, config):
        return float(parameters[0].sum()), 1, {}


app = ClientApp(
    client_fn=lambda context: FlowerClient(context).to_client(),
    mods=[count_calls, double_update],
)

server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvg(initial_parameters=ndarrays_to_parameters([np.zeros(2)]))
    num_rounds = int(context.run_config["num-server-rounds"])
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=num_rounds), strategy=strategy)
    DefaultWorkflow()(grid, legacy)
    model = legacy.state.array_records["parameters"].to_numpy_ndarrays()[0]
    result = {
        "model": model.tolist(),
        "losses": [loss for _, loss in legacy.history.losses_distributed],
    }
    with open(str(context.run_config["out"]), "w") as out:
        json.dump(result, out)
