"""The FedOpt family against Flower 1.42 over 3 rounds (tests/golden/gen_fedopt.py).

Each round, our strategy gets the replies Flower's got and must produce Flower's new model
within float32 tolerance; the state it carries (moments, momentum, current model) is its
own, so a wrong state shows up in rounds 2 and 3. Flower's FedAdam turns a float32 model
into float64; ours keeps each array's dtype, so values are compared, not dtypes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.common.legacy import (
    Code,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server import ClientProxy
from stamen.server import strategy as legacy
from stamen.serverapp import strategy as message_api

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[1] / "golden" / "data" / "fedopt.json").read_text()
)
RTOL, ATOL = 2e-5, 2e-6


def decode(spec: dict[str, Any]) -> np.ndarray:
    return np.asarray(spec["data"], dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])


def unused(message: Message, context: object) -> Message:
    raise AssertionError("configure_train sends nothing here")


@pytest.mark.parametrize("case", GOLDEN["message_api"], ids=lambda case: case["name"])
def test_message_api_rounds_equal_flower(case: dict[str, Any]) -> None:
    strategy = getattr(message_api, case["class"])(**case["kwargs"])
    grid = InProcessGrid.with_apps(unused, [4, 7, 9], partitioned=False)
    arrays = ArrayRecord({k: decode(v) for k, v in case["initial"].items()})
    for server_round, expected in enumerate(case["rounds"], start=1):
        random.seed(server_round)
        messages = {
            m.metadata.dst_node_id: m
            for m in strategy.configure_train(server_round, arrays, ConfigRecord(), grid)
        }
        assert dict(next(iter(messages.values())).content["config"]) == expected["config"]
        replies = []
        for reply in expected["replies"]:
            content = RecordDict(
                {
                    "arrays": ArrayRecord({k: decode(v) for k, v in reply["arrays"].items()}),
                    "metrics": MetricRecord({"num-examples": reply["weight"], "loss": 0.0}),
                }
            )
            replies.append(Message(content, reply_to=messages[reply["node"]]))
        new, _ = strategy.aggregate_train(server_round, replies)
        assert new is not None
        assert list(new) == list(expected["arrays"])
        for key, spec in expected["arrays"].items():
            assert new[key].dtype == arrays[key].dtype  # the model keeps its dtypes
            np.testing.assert_allclose(
                new[key].numpy(),
                decode(spec),
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"{key} r{server_round}",
            )
        arrays = new


GRID = InProcessGrid([])


@pytest.mark.parametrize("case", GOLDEN["legacy"], ids=lambda case: case["name"])
def test_legacy_rounds_equal_flower(case: dict[str, Any]) -> None:
    initial = [decode(spec) for spec in case["initial"]]
    strategy = getattr(legacy, case["class"])(
        initial_parameters=ndarrays_to_parameters(initial), **case["kwargs"]
    )
    for server_round, expected in enumerate(case["rounds"], start=1):
        results = [
            (
                ClientProxy(10 + r["partition"], {"partition-id": r["partition"]}, GRID),
                FitRes(
                    Status(Code.OK, ""),
                    ndarrays_to_parameters([decode(a) for a in r["arrays"]]),
                    r["weight"],
                    {},
                ),
            )
            for r in expected["results"]
        ]
        failures: list[Any] = [RuntimeError("lost")] * expected["failures"]
        parameters, _ = strategy.aggregate_fit(server_round, results, failures)
        assert (parameters is not None) == expected["aggregated"]
        if parameters is None:
            continue
        ours = parameters_to_ndarrays(parameters)
        for index, (array, spec) in enumerate(zip(ours, expected["arrays"], strict=True)):
            assert array.dtype == initial[index].dtype
            np.testing.assert_allclose(
                array, decode(spec), rtol=RTOL, atol=ATOL, err_msg=f"{index} r{server_round}"
            )


def test_legacy_fedprox_sends_proximal_mu_in_one_shared_config() -> None:
    from stamen.server import ClientManager

    manager = ClientManager()
    manager.bind(InProcessGrid.with_apps(unused, [1, 2, 3]), wait_timeout=0.05)
    strategy = legacy.FedProx(proximal_mu=0.25, on_fit_config_fn=lambda r: {"round": r})
    instructions = strategy.configure_fit(2, Parameters(tensors=[]), manager)
    assert len(instructions) == 3
    assert all(ins.config == {"round": 2, "proximal_mu": 0.25} for _, ins in instructions)
    assert all(ins is instructions[0][1] for _, ins in instructions)
