"""Record what Flower 1.42's Message-API FedAvg does on fixed replies (run with Flower's python).

Writes tests/golden/data/fedavg.json: for each case, the replies (arrays of mixed
dtypes, weights, metrics, error replies) and Flower's `aggregate_train` /
`aggregate_evaluate` results; which replies Flower rejects as inconsistent; and which
nodes `configure_train` / `configure_evaluate` sample after `random.seed(seed)` over a
fixed node list. tests/unit/test_golden_fedavg.py compares Stamen with it.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

OUT = Path(__file__).resolve().parent / "data" / "fedavg.json"


def encode_array(array: np.ndarray) -> dict[str, Any]:
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.ravel().tolist()}


def encode_metrics(metrics: MetricRecord) -> dict[str, Any]:
    return {key: value for key, value in metrics.items()}


def instruction(node_id: int, message_type: str) -> Message:
    return Message(RecordDict(), dst_node_id=node_id, message_type=message_type)


def make_reply(spec: dict[str, Any], message_type: str) -> Message:
    """A reply from spec["node"]: an error, or content built from the spec's records."""
    sent = instruction(spec["node"], message_type)
    if "error" in spec:
        return Message(Error(code=0, reason=spec["error"]), reply_to=sent)
    content = RecordDict()
    for name, arrays in spec.get("arrays", {}).items():
        content[name] = ArrayRecord(
            {
                key: Array(np.asarray(a["data"], dtype=np.dtype(a["dtype"])).reshape(a["shape"]))
                for key, a in arrays.items()
            }
        )
    for name, metrics in spec.get("metrics", {}).items():
        content[name] = MetricRecord(metrics)
    return Message(content, reply_to=sent)


def train_spec(rng: np.random.Generator, node: int, weight: int | float, order: list[str]) -> dict:
    arrays = {
        "w": encode_array(rng.standard_normal((3, 4)).astype(np.float32)),
        "b": encode_array(rng.standard_normal(5)),
        "h": encode_array(rng.standard_normal((2, 2)).astype(np.float16)),
        "n": encode_array(rng.integers(-50, 50, size=3).astype(np.int64)),
    }
    metrics = {
        "num-examples": weight,
        "loss": float(rng.uniform(0, 2)),
        "steps": int(rng.integers(1, 100)),
        "per-class": [float(x) for x in rng.uniform(0, 1, 3)],
    }
    return {
        "node": node,
        "arrays": {"arrays": {k: arrays[k] for k in order}},
        "metrics": {"m": metrics},
    }


def train_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    keys = ["w", "b", "h", "n"]
    return [
        {
            "name": "int-weights-with-a-failure",
            "replies": [
                train_spec(rng, 11, 10, keys),
                train_spec(rng, 7, 25, keys),
                {"node": 5, "error": "ValueError: out of memory"},
                train_spec(rng, 3, 7, keys),
                train_spec(rng, 9, 58, keys),
            ],
        },
        {
            "name": "float-weights-keys-in-other-orders",
            "replies": [
                train_spec(rng, 2, 0.5, keys),
                train_spec(rng, 4, 1.25, keys[::-1]),
                train_spec(rng, 6, 3.0, ["b", "w", "n", "h"]),
            ],
        },
        {"name": "one-reply", "replies": [train_spec(rng, 8, 3, keys)]},
        {
            "name": "only-failures",
            "replies": [{"node": 1, "error": "boom"}, {"node": 2, "error": "bust"}],
        },
    ]


def evaluate_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    def spec(node: int, weight: int | float) -> dict[str, Any]:
        metrics = {
            "num-examples": weight,
            "loss": float(rng.uniform(0, 2)),
            "correct": int(rng.integers(0, 100)),
            "acc": [float(x) for x in rng.uniform(0, 1, 2)],
        }
        return {"node": node, "metrics": {"eval": metrics}}

    return [
        {
            "name": "int-weights-with-failures",
            "replies": [spec(3, 12), {"node": 4, "error": "gone"}, spec(1, 30), spec(2, 1)],
        },
        {"name": "float-weights", "replies": [spec(1, 0.25), spec(2, 0.75)]},
        {"name": "only-failures", "replies": [{"node": 1, "error": "boom"}]},
    ]


def inconsistent_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    good = train_spec(rng, 1, 4, ["w", "b"])
    no_arrays = {"node": 2, "metrics": good["metrics"]}
    other_keys = train_spec(rng, 2, 4, ["w", "h"])
    two_arrays = {
        "node": 2,
        "arrays": {"a": good["arrays"]["arrays"], "b": good["arrays"]["arrays"]},
        "metrics": good["metrics"],
    }
    no_weight = {
        "node": 2,
        "arrays": good["arrays"],
        "metrics": {"m": {k: v for k, v in good["metrics"]["m"].items() if k != "num-examples"}},
    }
    list_weight = {
        "node": 2,
        "arrays": good["arrays"],
        "metrics": {"m": {**good["metrics"]["m"], "num-examples": [1, 2]}},
    }
    return [
        {"name": name, "replies": [good, bad]}
        for name, bad in [
            ("no-arrayrecord", no_arrays),
            ("other-array-keys", other_keys),
            ("two-arrayrecords", two_arrays),
            ("no-weight", no_weight),
            ("list-weight", list_weight),
        ]
    ]


class NodeList:
    """Just enough Grid for configure_*: a fixed list of connected node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def sampling_cases() -> list[dict[str, Any]]:
    node_ids = list(range(1, 11))
    cases = []
    for seed, fraction, minimum, phase in [
        (0, 1.0, 2, "train"),
        (1, 0.5, 2, "train"),
        (2, 0.3, 2, "evaluate"),
        (3, 0.1, 4, "train"),
        (4, 0.0, 2, "evaluate"),
        (5, 0.75, 2, "evaluate"),
    ]:
        if phase == "train":
            strategy = FedAvg(fraction_train=fraction, min_train_nodes=minimum)
            configure = strategy.configure_train
        else:
            strategy = FedAvg(fraction_evaluate=fraction, min_evaluate_nodes=minimum)
            configure = strategy.configure_evaluate
        random.seed(seed)
        config = ConfigRecord({"lr": 0.1})
        messages = list(configure(3, ArrayRecord(), config, NodeList(node_ids)))
        cases.append(
            {
                "seed": seed,
                "phase": phase,
                "fraction": fraction,
                "minimum": minimum,
                "node_ids": node_ids,
                "sampled": [m.metadata.dst_node_id for m in messages],
                "message_types": sorted({m.metadata.message_type for m in messages}),
                "config": dict(messages[0].content["config"]) if messages else None,
            }
        )
    return cases


def main() -> None:
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 1
    rng = np.random.default_rng(20261206)
    facts: dict[str, Any] = {"flower": __import__("flwr").__version__, "train": [], "evaluate": []}

    for case in train_cases(rng):
        replies = [make_reply(spec, "train") for spec in case["replies"]]
        arrays, metrics = FedAvg().aggregate_train(1, replies)
        case["arrays"] = (
            None if arrays is None else {k: encode_array(a.numpy()) for k, a in arrays.items()}
        )
        case["metrics"] = None if metrics is None else encode_metrics(metrics)
        facts["train"].append(case)

    for case in evaluate_cases(rng):
        replies = [make_reply(spec, "evaluate") for spec in case["replies"]]
        metrics = FedAvg().aggregate_evaluate(1, replies)
        case["metrics"] = None if metrics is None else encode_metrics(metrics)
        facts["evaluate"].append(case)

    facts["inconsistent"] = []
    for case in inconsistent_cases(rng):
        replies = [make_reply(spec, "train") for spec in case["replies"]]
        try:
            FedAvg().aggregate_train(1, replies)
        except Exception as exc:  # what Flower raises is the fact recorded
            case["raises"] = type(exc).__name__
        else:
            case["raises"] = None
        facts["inconsistent"].append(case)

    facts["sampling"] = sampling_cases()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
