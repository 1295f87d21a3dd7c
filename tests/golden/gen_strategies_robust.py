"""Golden vectors: Flower 1.42's robust strategies (and QFedAvg) on fixed inputs.

Runs under Flower's venv (`make golden`). Three rounds, seven clients, mixed dtypes,
unequal example counts, one outlier client, a failed reply; each round starts from the
previous round's Flower result. Inputs and outputs go to data/strategies_robust.npz:
  in/r{round}/c{client}/{array}   reply arrays       in/r{round}/num_examples, .../loss
  in/r{round}/global/{array}      the round's starting model
  legacy/{name}/r{round}/{array}  flwr.server.strategy result
  message/{name}/r{round}/{array} flwr.serverapp.strategy result (metrics under .../m/{key})
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import strategy as legacy
from flwr.serverapp import strategy as message
from flwr.supercore.task_identity import TaskIdentity

OUT = Path(__file__).parent / "data" / "strategies_robust.npz"
NAMES = ["w", "b", "c", "n"]
CLIENTS = 7
ROUNDS = 3


def start_model(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.standard_normal((4, 3)).astype(np.float32),
        rng.standard_normal(5),
        rng.standard_normal((2, 2, 2)).astype(np.float32),
        np.array([3, 10], dtype=np.int64),
    ]


def replies(rng: np.random.Generator, model: list[np.ndarray], ints: bool) -> list[list]:
    out = []
    for client in range(CLIENTS):
        scale = 8.0 if client == 2 else 0.3  # client 2 is the outlier
        arrays = []
        for a in model:
            if a.dtype.kind == "i":
                arrays.append(a + rng.integers(0, 4, a.shape) if ints else a.astype(np.float32))
            else:
                arrays.append((a + scale * rng.standard_normal(a.shape)).astype(a.dtype))
        out.append(arrays)
    return out


def legacy_results(arrays: list[list], counts: list[int]) -> list:
    return [
        (None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(a), n, {"acc": float(i)}))
        for i, (a, n) in enumerate(zip(arrays, counts, strict=True))
    ]


def message_replies(arrays: list[list], counts: list[int], losses: list[float]) -> list:
    out = []
    for node, (a, n, loss) in enumerate(zip(arrays, counts, losses, strict=True), start=1):
        sent = Message(RecordDict(), dst_node_id=node, message_type="train")
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v.copy()) for k, v in zip(NAMES, a, strict=True)}),
                "metrics": MetricRecord(
                    {"num-examples": n, "train_loss": loss, "acc": float(node)}
                ),
            }
        )
        out.append(Message(content, reply_to=sent))
    sent = Message(RecordDict(), dst_node_id=99, message_type="train")
    out.append(Message(Error(code=0, reason="client raised"), reply_to=sent))
    return out


def as_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.kind == "i" else a


def save_arrays(store: dict, prefix: str, arrays: list[np.ndarray]) -> None:
    for name, a in zip(NAMES, arrays, strict=True):
        store[f"{prefix}/{name}"] = np.asarray(a)


def legacy_strategies():
    def evaluate_fn(server_round, arrays, config):
        return float(sum(np.sum(np.abs(a.astype(np.float64))) for a in arrays) / 10.0), {}

    return {
        "FedMedian": legacy.FedMedian(),
        "FedTrimmedAvg": legacy.FedTrimmedAvg(beta=0.2),
        "Krum": legacy.Krum(num_malicious_clients=1),
        "MultiKrum": legacy.Krum(num_malicious_clients=1, num_clients_to_keep=3),
        "Bulyan": legacy.Bulyan(num_malicious_clients=1, to_keep=0),
        "QFedAvg": legacy.QFedAvg(q_param=0.2, qffl_learning_rate=0.1, evaluate_fn=evaluate_fn),
    }


def message_strategies():
    return {
        "FedMedian": message.FedMedian(),
        "FedTrimmedAvg": message.FedTrimmedAvg(beta=0.2),
        "Krum": message.Krum(num_malicious_nodes=1),
        "MultiKrum": message.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
        "Bulyan": message.Bulyan(num_malicious_nodes=1),
        "QFedAvg": message.QFedAvg(client_learning_rate=0.1, q=0.2),
    }


def main() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    rng = np.random.default_rng(12)
    store: dict[str, np.ndarray] = {}
    start = start_model(rng)
    rounds = []
    for r in range(ROUNDS):
        counts = [int(c) for c in rng.integers(5, 50, CLIENTS)]
        losses = [float(x) for x in rng.uniform(0.2, 2.0, CLIENTS)]
        with_ints = replies(rng, start, ints=True)
        floats_only = [[as_float(a) for a in c] for c in with_ints]
        rounds.append((counts, losses, with_ints, floats_only))
        store[f"in/r{r}/num_examples"] = np.array(counts)
        store[f"in/r{r}/loss"] = np.array(losses)
        for c, arrays in enumerate(with_ints):
            save_arrays(store, f"in/r{r}/c{c}", arrays)
    save_arrays(store, "in/global", start)

    for name, strategy in legacy_strategies().items():
        model = [as_float(a) for a in start]
        for r, (counts, _, with_ints, floats_only) in enumerate(rounds):
            arrays = floats_only if name == "QFedAvg" else with_ints
            if name == "QFedAvg":
                strategy.pre_weights = model  # what configure_fit records
            params, _ = strategy.aggregate_fit(
                r + 1, legacy_results(arrays, counts), [RuntimeError("client failed")]
            )
            model = parameters_to_ndarrays(params)
            save_arrays(store, f"legacy/{name}/r{r}", model)

    for name, strategy in message_strategies().items():
        model = [as_float(a) for a in start]
        for r, (counts, losses, with_ints, floats_only) in enumerate(rounds):
            arrays = floats_only if name == "QFedAvg" else with_ints
            if name == "QFedAvg":
                strategy.current_arrays = ArrayRecord(
                    {k: Array(v.copy()) for k, v in zip(NAMES, model, strict=True)}
                )
            record, metrics = strategy.aggregate_train(
                r + 1, message_replies(arrays, counts, losses)
            )
            model = [record[k].numpy() for k in NAMES]
            save_arrays(store, f"message/{name}/r{r}", model)
            for key, value in metrics.items():
                store[f"message/{name}/r{r}/m/{key}"] = np.asarray(value)

    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **store)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(store)} entries)")


if __name__ == "__main__":
    main()
