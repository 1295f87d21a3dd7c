"""Golden vectors: Flower 1.42's FedXgbBagging (both APIs) and FedXgbCyclic (Message API).

Runs under Flower's venv (`make golden`); writes data/strategies_xgb.json. The models are
xgboost-shaped JSON (the keys bagging edits), 3 rounds x 3 clients, 1-2 parallel trees,
with a failed reply in every Message-API round. The server needs no xgboost for this.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
from flwr.common import FitRes, Parameters, Status
from flwr.server import strategy as legacy
from flwr.serverapp import strategy as message
from flwr.supercore.task_identity import TaskIdentity

OUT = Path(__file__).parent / "data" / "strategies_xgb.json"
ROUNDS = 3
CLIENTS = 3


def booster(seed: int, parallel: int) -> bytes:
    """An xgboost-shaped model holding `parallel` fresh trees."""
    rng = random.Random(seed)
    trees = [
        {
            "id": i,
            "split_conditions": [rng.random() for _ in range(3)],
            "left_children": [1, -1, -1],
        }
        for i in range(parallel)
    ]
    model = {
        "learner": {
            "gradient_booster": {
                "model": {
                    "gbtree_model_param": {
                        "num_trees": str(parallel),
                        "num_parallel_tree": str(parallel),
                    },
                    "iteration_indptr": [0, parallel],
                    "trees": trees,
                    "tree_info": [0] * parallel,
                }
            },
            "objective": {"name": "binary:logistic"},
        },
        "version": [3, 0, 0],
    }
    return bytes(json.dumps(model), "utf-8")


def main() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    rounds = [
        [booster(100 * r + c, 1 + (r + c) % 2).decode() for c in range(CLIENTS)]
        for r in range(ROUNDS)
    ]
    facts: dict[str, object] = {"inputs": rounds}

    bagging = message.FedXgbBagging()
    bagging.current_bst = b""
    outputs = []
    for r, models in enumerate(rounds):
        replies = []
        for node, model in enumerate(models, start=1):
            sent = Message(RecordDict(), dst_node_id=node, message_type="train")
            content = RecordDict(
                {
                    "arrays": ArrayRecord([np.frombuffer(model.encode(), dtype=np.uint8)]),
                    "metrics": MetricRecord({"num-examples": node, "auc": 0.5 + node / 10}),
                }
            )
            replies.append(Message(content, reply_to=sent))
        sent = Message(RecordDict(), dst_node_id=9, message_type="train")
        replies.append(Message(Error(code=0, reason="raised"), reply_to=sent))
        arrays, metrics = bagging.aggregate_train(r + 1, replies)
        outputs.append({"model": arrays["0"].numpy().tobytes().decode(), "metrics": dict(metrics)})
    facts["message_bagging"] = outputs

    strategy = legacy.FedXgbBagging()
    outputs = []
    for models in rounds:
        results = [
            (None, FitRes(Status(0, ""), Parameters(tensor_type="", tensors=[m.encode()]), 1, {}))
            for m in models
        ]
        params, _ = strategy.aggregate_fit(1, results, [])
        outputs.append(params.tensors[0].decode())
    facts["legacy_bagging"] = outputs

    cyclic = message.FedXgbCyclic()
    sent = Message(RecordDict(), dst_node_id=1, message_type="train")
    content = RecordDict(
        {
            "arrays": ArrayRecord({"0": Array(np.frombuffer(rounds[0][0].encode(), np.uint8))}),
            "metrics": MetricRecord({"num-examples": 4, "auc": 0.75}),
        }
    )
    arrays, metrics = cyclic.aggregate_train(1, [Message(content, reply_to=sent)])
    facts["message_cyclic"] = {
        "model": arrays["0"].numpy().tobytes().decode(),
        "metrics": dict(metrics),
    }

    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(facts, indent=1))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
