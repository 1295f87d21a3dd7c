"""XGBoost strategies: Flower's bagging bytes (gen_strategies_xgb), errors, real boosters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.common.errors import InconsistentMessageReplies
from stamen.common.legacy import (
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.server import ClientProxy
from stamen.server import strategy as legacy
from stamen.serverapp import strategy as message

GOLDEN = json.loads(
    (Path(__file__).parents[1] / "golden" / "data" / "strategies_xgb.json").read_text()
)
GRID = InProcessGrid([])


def model_reply(node: int, model: bytes, **metrics: float) -> Message:
    sent = Message(RecordDict(), node, MessageType.TRAIN)
    content = RecordDict(
        {
            "arrays": ArrayRecord([np.frombuffer(model, dtype=np.uint8)]),
            "metrics": MetricRecord({"num-examples": node, **metrics}),
        }
    )
    return Message(content, reply_to=sent)


def test_message_bagging_matches_flower_byte_for_byte() -> None:
    strategy = message.FedXgbBagging()
    strategy.current_bst = b""
    for r, (models, expected) in enumerate(
        zip(GOLDEN["inputs"], GOLDEN["message_bagging"], strict=True)
    ):
        replies = [
            model_reply(node, m.encode(), auc=0.5 + node / 10)
            for node, m in enumerate(models, start=1)
        ]
        failed = Message(RecordDict(), 9, MessageType.TRAIN)
        replies.append(Message(error=Error(ErrorCode.CLIENT_APP_RAISED, "x"), reply_to=failed))
        arrays, metrics = strategy.aggregate_train(r + 1, replies)
        assert arrays is not None
        assert metrics is not None
        assert next(iter(arrays.values())).numpy().tobytes().decode() == expected["model"]
        assert dict(metrics) == pytest.approx(expected["metrics"])


def test_legacy_bagging_matches_flower_byte_for_byte() -> None:
    strategy = legacy.FedXgbBagging()
    for models, expected in zip(GOLDEN["inputs"], GOLDEN["legacy_bagging"], strict=True):
        results = [
            (
                ClientProxy(10 + i, {"partition-id": i}, GRID),
                FitRes(Status(), Parameters(tensor_type="", tensors=[m.encode()]), 1, {}),
            )
            for i, m in enumerate(models)
        ]
        params, _ = strategy.aggregate_fit(1, results, [])
        assert params is not None
        assert params.tensor_type == ""
        assert params.tensors[0].decode() == expected


def test_message_cyclic_keeps_the_reply_model() -> None:
    model = GOLDEN["inputs"][0][0].encode()
    arrays, metrics = message.FedXgbCyclic().aggregate_train(1, [model_reply(4, model, auc=0.75)])
    assert arrays is not None
    assert (
        next(iter(arrays.values())).numpy().tobytes().decode() == GOLDEN["message_cyclic"]["model"]
    )
    assert dict(metrics or {}) == pytest.approx(GOLDEN["message_cyclic"]["metrics"])


def test_bagging_refuses_records_with_several_arrays() -> None:
    strategy = message.FedXgbBagging()
    strategy.current_bst = b""
    sent = Message(RecordDict(), 1, MessageType.TRAIN)
    content = RecordDict(
        {
            "arrays": ArrayRecord({"a": np.zeros(2, np.uint8), "b": np.zeros(2, np.uint8)}),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    with pytest.raises(InconsistentMessageReplies, match="exactly one Array"):
        strategy.aggregate_train(1, [Message(content, reply_to=sent)])


def test_cyclic_accepts_only_all_or_nothing_fractions() -> None:
    with pytest.raises(ValueError, match="fraction_train"):
        message.FedXgbCyclic(fraction_train=0.5)


def test_cyclic_legacy_visits_clients_in_partition_order() -> None:
    strategy = legacy.FedXgbCyclic()
    clients = [ClientProxy(50 - i, {"partition-id": i}, GRID) for i in range(3)]
    picked = [strategy._one(r, list(reversed(clients)))[0].node_id for r in (1, 2, 3, 4)]
    assert picked == [50, 49, 48, 50]


BOOSTERS = """
import sys
import numpy as np
import xgboost as xgb
from stamen.server.strategy.xgb import aggregate_bagging

rng = np.random.default_rng(0)
x = rng.standard_normal((200, 5))
y = (x[:, 0] + 0.3 * rng.standard_normal(200) > 0).astype(int)
params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "nthread": 1}
global_model = b""
for part in range(3):
    booster = xgb.train(params, xgb.DMatrix(x[part::3], label=y[part::3]), num_boost_round=2)
    global_model = aggregate_bagging(global_model, bytes(booster.save_raw("json")))
merged = xgb.Booster(params)
merged.load_model(bytearray(global_model))
accuracy = ((merged.predict(xgb.DMatrix(x)) > 0.5) == y).mean()
print(merged.num_boosted_rounds(), accuracy)
"""


def test_bagging_real_boosters_add_up_their_trees() -> None:
    # In a child process: xgboost's OpenMP threads here would make later forks unsafe.
    done = subprocess.run(
        [sys.executable, "-c", BOOSTERS], capture_output=True, text=True, timeout=60, check=True
    )
    rounds, accuracy = done.stdout.split()
    assert int(rounds) == 2 + 2 * 1  # the first model, then 1 round from each other one
    assert float(accuracy) > 0.8


def test_nn_avg_averages_networks_and_collects_trees() -> None:
    strategy = legacy.FedXgbNnAvg()
    results = []
    for i, (value, n) in enumerate([(1.0, 1), (4.0, 2)]):
        pair = (ndarrays_to_parameters([np.full(2, value)]), f"trees-{i}")
        res = FitRes(Status(), pair, n, {})  # type: ignore[arg-type]
        results.append((ClientProxy(10 + i, {"partition-id": i}, GRID), res))
    (network, trees), _ = strategy.aggregate_fit(1, results, [])
    np.testing.assert_allclose(parameters_to_ndarrays(network)[0], 3.0)
    assert trees == ["trees-0", "trees-1"]
