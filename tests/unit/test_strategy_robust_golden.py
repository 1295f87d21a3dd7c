"""Robust strategies and QFedAvg against Flower 1.42's golden vectors (gen_strategies_robust).

Each round is checked on its own: it starts from Flower's previous-round model, so one
round's float32 rounding does not carry into the next. Integer arrays stay integers in
Stamen; Flower's float result is compared after rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.common.legacy import FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from stamen.common.message import Error, ErrorCode, Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.server import ClientProxy
from stamen.server.strategy import Bulyan, FedMedian, FedTrimmedAvg, Krum, QFedAvg
from stamen.serverapp import strategy as message

DATA = np.load(Path(__file__).parents[1] / "golden" / "data" / "strategies_robust.npz")
NAMES = ["w", "b", "c", "n"]
CLIENTS = 7
ROUNDS = 3
GRID = InProcessGrid([])


def arrays(prefix: str) -> list[np.ndarray]:
    return [DATA[f"{prefix}/{name}"] for name in NAMES]


def round_inputs(r: int, floats_only: bool) -> tuple[list[list[np.ndarray]], list[int]]:
    models = []
    for c in range(CLIENTS):
        model = arrays(f"in/r{r}/c{c}")
        if floats_only:
            model = [a.astype(np.float32) if a.dtype.kind == "i" else a for a in model]
        models.append(model)
    return models, [int(n) for n in DATA[f"in/r{r}/num_examples"]]


def assert_matches(ours: list[np.ndarray], flower: list[np.ndarray]) -> None:
    assert len(ours) == len(flower)
    for a, f in zip(ours, flower, strict=True):
        assert a.shape == f.shape
        if a.dtype.kind == "i":
            np.testing.assert_array_equal(a, np.rint(f).astype(a.dtype))
        else:
            np.testing.assert_allclose(a, f, rtol=1e-5, atol=1e-6)


def evaluate_fn(server_round, ndarrays, config):
    return float(sum(np.sum(np.abs(a.astype(np.float64))) for a in ndarrays) / 10.0), {}


LEGACY = {
    "FedMedian": lambda: FedMedian(),
    "FedTrimmedAvg": lambda: FedTrimmedAvg(beta=0.2),
    "Krum": lambda: Krum(num_malicious_clients=1),
    "MultiKrum": lambda: Krum(num_malicious_clients=1, num_clients_to_keep=3),
    "Bulyan": lambda: Bulyan(num_malicious_clients=1, to_keep=0),
    "QFedAvg": lambda: QFedAvg(q_param=0.2, qffl_learning_rate=0.1, evaluate_fn=evaluate_fn),
}


def legacy_results(models: list[list[np.ndarray]], counts: list[int]) -> list:
    return [
        (
            ClientProxy(100 + i, {"partition-id": i}, GRID),
            FitRes(Status(), ndarrays_to_parameters(m), n, {"acc": float(i)}),
        )
        for i, (m, n) in enumerate(zip(models, counts, strict=True))
    ]


@pytest.mark.parametrize("name", sorted(LEGACY))
@pytest.mark.parametrize("r", range(ROUNDS))
def test_legacy_strategy_matches_flower(name: str, r: int) -> None:
    strategy = LEGACY[name]()
    qfedavg = isinstance(strategy, QFedAvg)
    models, counts = round_inputs(r, floats_only=qfedavg)
    if qfedavg:
        previous = arrays(f"legacy/{name}/r{r - 1}") if r else arrays("in/global")
        start = [p.astype(np.float32) if p.dtype.kind == "i" else p for p in previous]
        strategy.pre_weights = [p.astype(m.dtype) for p, m in zip(start, models[0], strict=True)]
    params, _ = strategy.aggregate_fit(r + 1, legacy_results(models, counts), [RuntimeError()])
    assert params is not None
    ours = parameters_to_ndarrays(params)
    assert [a.dtype for a in ours] == [m.dtype for m in models[0]]
    assert_matches(ours, arrays(f"legacy/{name}/r{r}"))


MESSAGE = {
    "FedMedian": lambda: message.FedMedian(),
    "FedTrimmedAvg": lambda: message.FedTrimmedAvg(beta=0.2),
    "Krum": lambda: message.Krum(num_malicious_nodes=1),
    "MultiKrum": lambda: message.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
    "Bulyan": lambda: message.Bulyan(num_malicious_nodes=1),
    "QFedAvg": lambda: message.QFedAvg(client_learning_rate=0.1, q=0.2),
}


def message_replies(models: list[list[np.ndarray]], counts: list[int], losses) -> list[Message]:
    replies = []
    for node, (m, n, loss) in enumerate(zip(models, counts, losses, strict=True), start=1):
        sent = Message(RecordDict(), node, "train")
        content = RecordDict(
            {
                "arrays": ArrayRecord(dict(zip(NAMES, m, strict=True))),
                "metrics": MetricRecord(
                    {"num-examples": n, "train_loss": float(loss), "acc": float(node)}
                ),
            }
        )
        replies.append(Message(content, reply_to=sent))
    failed = Message(RecordDict(), 99, "train")
    replies.append(Message(error=Error(ErrorCode.CLIENT_APP_RAISED, "raised"), reply_to=failed))
    return replies


@pytest.mark.parametrize("name", sorted(MESSAGE))
@pytest.mark.parametrize("r", range(ROUNDS))
def test_message_strategy_matches_flower(name: str, r: int) -> None:
    strategy = MESSAGE[name]()
    qfedavg = isinstance(strategy, message.QFedAvg)
    models, counts = round_inputs(r, floats_only=qfedavg)
    if qfedavg:
        previous = arrays(f"message/{name}/r{r - 1}") if r else arrays("in/global")
        start = [p.astype(m.dtype) for p, m in zip(previous, models[0], strict=True)]
        strategy.current_arrays = ArrayRecord(dict(zip(NAMES, start, strict=True)))
    replies = message_replies(models, counts, DATA[f"in/r{r}/loss"])
    record, metrics = strategy.aggregate_train(r + 1, replies)
    assert record is not None
    assert metrics is not None
    ours = [record[name].numpy() for name in NAMES]
    assert [a.dtype for a in ours] == [m.dtype for m in models[0]]
    assert_matches(ours, arrays(f"message/{name}/r{r}"))
    prefix = f"message/{name}/r{r}/m/"
    flower_metrics = {k[len(prefix) :]: DATA[k] for k in DATA.files if k.startswith(prefix)}
    assert sorted(metrics) == sorted(flower_metrics)
    for key, value in flower_metrics.items():
        assert metrics[key] == pytest.approx(float(value), rel=1e-9)
