"""Record Flower 1.42's FedOpt family over several rounds (run with Flower's python).

These strategies carry server state (moments, momentum, the current model) from round to
round, so each case runs 3 rounds: the replies of a round are the round's global model
plus per-client noise, with per-client weights; Flower's new model is recorded after
each round. Message API: FedAdam, FedYogi, FedAdagrad, FedAvgM, FedProx (with the
configs they send); legacy API: FedAdam, FedYogi, FedAdagrad, FedOpt, FedAvgM, FedProx,
FaultTolerantFedAvg (with failures). Writes tests/golden/data/fedopt.json, which
tests/unit/test_golden_fedopt.py compares Stamen with.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import strategy as legacy
from flwr.serverapp import strategy as message_api
from flwr.supercore.task_identity import TaskIdentity

OUT = Path(__file__).resolve().parent / "data" / "fedopt.json"
ROUNDS = 3
NODES = [4, 7, 9]

MESSAGE_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("FedAdam", "FedAdam", {}),
    ("FedAdam-tuned", "FedAdam", {"eta": 0.05, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-2}),
    ("FedYogi", "FedYogi", {}),
    ("FedAdagrad", "FedAdagrad", {}),
    ("FedAvgM-momentum", "FedAvgM", {"server_learning_rate": 0.7, "server_momentum": 0.5}),
    ("FedAvgM-default", "FedAvgM", {}),
    ("FedProx", "FedProx", {"proximal_mu": 0.3}),
]

LEGACY_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("FedAdam", "FedAdam", {}),
    ("FedYogi", "FedYogi", {"eta": 0.03}),
    ("FedAdagrad", "FedAdagrad", {}),
    ("FedOpt", "FedOpt", {}),
    ("FedAvgM-momentum", "FedAvgM", {"server_learning_rate": 0.7, "server_momentum": 0.5}),
    ("FedProx", "FedProx", {"proximal_mu": 0.3}),
    ("FaultTolerantFedAvg", "FaultTolerantFedAvg", {"min_completion_rate_fit": 0.7}),
]


def encode(array: np.ndarray) -> dict[str, Any]:
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.ravel().tolist()}


def initial_model(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "w": rng.standard_normal((4, 3)).astype(np.float32),
        "b": rng.standard_normal(5),
    }


def client_model(
    model: dict[str, np.ndarray], rng: np.random.Generator, scale: float
) -> dict[str, np.ndarray]:
    return {k: (v + scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in model.items()}


class NodeList:
    """Just enough Grid for configure_train: a fixed list of connected node ids."""

    def get_node_ids(self) -> list[int]:
        return list(NODES)


def message_case(name: str, cls: str, kwargs: dict[str, Any], rng: np.random.Generator) -> dict:
    strategy = getattr(message_api, cls)(**kwargs)
    model = initial_model(rng)
    case: dict[str, Any] = {
        "name": name,
        "class": cls,
        "kwargs": kwargs,
        "initial": {k: encode(v) for k, v in model.items()},
        "rounds": [],
    }
    for server_round in range(1, ROUNDS + 1):
        random.seed(server_round)
        arrays = ArrayRecord({k: Array(v) for k, v in model.items()})
        messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), NodeList()))
        replies = []
        for index, message in enumerate(messages):
            weight = int(rng.integers(1, 50))
            update = client_model(model, rng, 0.1 * (index + 1))
            content = RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v) for k, v in update.items()}),
                    "metrics": MetricRecord({"num-examples": weight, "loss": float(index)}),
                }
            )
            replies.append(
                (message.metadata.dst_node_id, weight, update, Message(content, reply_to=message))
            )
        new, metrics = strategy.aggregate_train(server_round, [r[3] for r in replies])
        model = {k: a.numpy() for k, a in new.items()}
        case["rounds"].append(
            {
                "config": dict(messages[0].content["config"]),
                "replies": [
                    {"node": node, "weight": weight, "arrays": {k: encode(v) for k, v in u.items()}}
                    for node, weight, u, _ in replies
                ],
                "arrays": {k: encode(v) for k, v in model.items()},
                "metrics": dict(metrics),
            }
        )
    return case


def legacy_case(name: str, cls: str, kwargs: dict[str, Any], rng: np.random.Generator) -> dict:
    model = initial_model(rng)
    ndarrays = [model["w"], model["b"]]
    strategy = getattr(legacy, cls)(initial_parameters=ndarrays_to_parameters(ndarrays), **kwargs)
    case: dict[str, Any] = {
        "name": name,
        "class": cls,
        "kwargs": kwargs,
        "initial": [encode(a) for a in ndarrays],
        "rounds": [],
    }
    for server_round in range(1, ROUNDS + 1):
        results, specs = [], []
        for index in range(3):
            weight = int(rng.integers(1, 50))
            update = [
                (a + 0.1 * (index + 1) * rng.standard_normal(a.shape)).astype(a.dtype)
                for a in ndarrays
            ]
            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(update), weight, {})
            results.append((None, res))
            specs.append(
                {"partition": index, "weight": weight, "arrays": [encode(a) for a in update]}
            )
        # FaultTolerantFedAvg: round 2 has too many failures for its completion rate.
        failures = [RuntimeError("lost")] * (2 if server_round == 2 else 1)
        parameters, _ = strategy.aggregate_fit(server_round, results, failures)
        if parameters is not None:
            ndarrays = parameters_to_ndarrays(parameters)
        case["rounds"].append(
            {
                "results": specs,
                "failures": len(failures),
                "aggregated": parameters is not None,
                "arrays": [encode(a) for a in ndarrays],
            }
        )
    return case


def main() -> None:
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 1
    rng = np.random.default_rng(1206)
    facts = {
        "flower": __import__("flwr").__version__,
        "message_api": [message_case(*case, rng) for case in MESSAGE_CASES],
        "legacy": [legacy_case(*case, rng) for case in LEGACY_CASES],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
