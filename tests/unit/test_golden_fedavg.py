"""Message-API FedAvg against Flower 1.42 on the same replies (tests/golden/gen_fedavg.py).

Arrays match within each dtype's tolerance: Flower sums in the arrays' own dtype, Stamen
in float64 rounded once, so Stamen is the more exact of the two. Integer arrays keep
their dtype in Stamen (rounded), where Flower returns float64 means.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.common.errors import InconsistentMessageReplies
from stamen.common.message import Error, ErrorCode, Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.serverapp.strategy import FedAvg

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[1] / "golden" / "data" / "fedavg.json").read_text()
)
TOLERANCE = {"f2": (1e-2, 1e-3), "f4": (1e-5, 1e-6), "f8": (1e-12, 1e-12)}


def decode_array(spec: dict[str, Any]) -> np.ndarray:
    return np.asarray(spec["data"], dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])


def make_reply(spec: dict[str, Any], message_type: str) -> Message:
    sent = Message(RecordDict(), spec["node"], message_type)
    if "error" in spec:
        return Message(error=Error(ErrorCode.CLIENT_APP_RAISED, spec["error"]), reply_to=sent)
    content = RecordDict()
    for name, arrays in spec.get("arrays", {}).items():
        content[name] = ArrayRecord({k: decode_array(a) for k, a in arrays.items()})
    for name, metrics in spec.get("metrics", {}).items():
        content[name] = MetricRecord(metrics)
    return Message(content, reply_to=sent)


def assert_metrics_match(ours: MetricRecord | None, flower: dict[str, Any] | None) -> None:
    if flower is None:
        assert ours is None
        return
    assert ours is not None
    assert list(ours) == list(flower)
    for key, value in flower.items():
        assert ours[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("case", GOLDEN["train"], ids=lambda case: case["name"])
def test_aggregate_train_equals_flower(case: dict[str, Any]) -> None:
    replies = [make_reply(spec, "train") for spec in case["replies"]]
    arrays, metrics = FedAvg().aggregate_train(1, replies)
    assert_metrics_match(metrics, case["metrics"])
    if case["arrays"] is None:
        assert arrays is None
        return
    assert arrays is not None
    assert list(arrays) == list(case["arrays"])
    first = next(spec for spec in case["replies"] if "arrays" in spec)["arrays"]["arrays"]
    for key, spec in case["arrays"].items():
        ours, flower = arrays[key].numpy(), decode_array(spec)
        assert ours.dtype == np.dtype(first[key]["dtype"])
        if ours.dtype.kind in "iu":
            np.testing.assert_array_equal(ours, np.rint(flower).astype(ours.dtype))
            continue
        rtol, atol = TOLERANCE[flower.dtype.str[1:]]
        np.testing.assert_allclose(ours, flower, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("case", GOLDEN["evaluate"], ids=lambda case: case["name"])
def test_aggregate_evaluate_equals_flower(case: dict[str, Any]) -> None:
    replies = [make_reply(spec, "evaluate") for spec in case["replies"]]
    assert_metrics_match(FedAvg().aggregate_evaluate(1, replies), case["metrics"])


@pytest.mark.parametrize("case", GOLDEN["inconsistent"], ids=lambda case: case["name"])
def test_flower_rejects_what_we_reject(case: dict[str, Any]) -> None:
    assert case["raises"] == "InconsistentMessageReplies"
    replies = [make_reply(spec, "train") for spec in case["replies"]]
    with pytest.raises(InconsistentMessageReplies):
        FedAvg().aggregate_train(1, replies)


def unused(message: Message, context: object) -> Message:
    raise AssertionError("configure_* sends nothing")


@pytest.mark.parametrize("case", GOLDEN["sampling"], ids=lambda case: f"seed{case['seed']}")
def test_configure_samples_the_nodes_flower_samples(case: dict[str, Any]) -> None:
    grid = InProcessGrid.with_apps(unused, case["node_ids"], partitioned=False)
    if case["phase"] == "train":
        strategy = FedAvg(fraction_train=case["fraction"], min_train_nodes=case["minimum"])
        configure = strategy.configure_train
    else:
        strategy = FedAvg(fraction_evaluate=case["fraction"], min_evaluate_nodes=case["minimum"])
        configure = strategy.configure_evaluate
    random.seed(case["seed"])
    messages = list(configure(3, ArrayRecord(), ConfigRecord({"lr": 0.1}), grid))
    assert [m.metadata.dst_node_id for m in messages] == case["sampled"]
    assert sorted({m.metadata.message_type for m in messages}) == case["message_types"]
    if messages:
        assert dict(messages[0].content["config"]) == case["config"]
