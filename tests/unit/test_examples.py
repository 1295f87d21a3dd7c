"""The quickstart examples: each ClientApp trains one round on partition 0, no network.

The initial model comes from each example's own `server_fn`, the instruction goes through
the `app` object as a SuperNode would call it, so client.py, server.py and task.py are all
exercised. Training must lower the test loss and be bit-for-bit repeatable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from stamen.client import ClientApp
from stamen.common.context import Context
from stamen.common.legacy import (
    EvaluateIns,
    FitIns,
    FitRes,
    Parameters,
    evaluateins_to_recorddict,
    fitins_to_recorddict,
    parameters_to_ndarrays,
    recorddict_to_evaluateres,
    recorddict_to_fitres,
)
from stamen.common.loading import load_app
from stamen.common.message import Message, MessageType
from stamen.server import ServerApp
from stamen.server.strategy import FedAvg

pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NUM_PARTITIONS = 10


@pytest.fixture(autouse=True)
def _isolated_imports() -> Iterator[None]:
    """Both examples have modules named task, client and server: forget them afterwards."""
    path = list(sys.path)
    yield
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).resolve().is_relative_to(EXAMPLES):
            del sys.modules[name]
    sys.path[:] = path


def _apps(example: str) -> tuple[ClientApp, Parameters, Context]:
    if example == "quickstart-pytorch":
        pytest.importorskip("torch")
    directory = EXAMPLES / example
    client_app = load_app("client:app", ClientApp, directory)
    load_app("server:app", ServerApp, directory)
    server_fn = load_app("server:server_fn", object, directory)
    context = Context(
        run_id=1,
        node_id=5,
        node_config={"partition-id": 0, "num-partitions": NUM_PARTITIONS},
        run_config={"seed": 7},
    )
    strategy = server_fn(context).strategy
    assert isinstance(strategy, FedAvg)
    assert strategy.initial_parameters is not None
    return client_app, strategy.initial_parameters, context


def _fit(app: ClientApp, parameters: Parameters, context: Context, server_round: int) -> FitRes:
    content = fitins_to_recorddict(FitIns(parameters, {"server-round": server_round}))
    reply = app(Message(content, dst_node_id=5, message_type=MessageType.TRAIN), context)
    assert not reply.has_error(), reply
    return recorddict_to_fitres(reply.content)


def _evaluate(app: ClientApp, parameters: Parameters, context: Context) -> tuple[float, float]:
    content = evaluateins_to_recorddict(EvaluateIns(parameters, {}))
    reply = app(Message(content, dst_node_id=5, message_type=MessageType.EVALUATE), context)
    assert not reply.has_error(), reply
    result = recorddict_to_evaluateres(reply.content)
    assert result.num_examples == 36  # 20% of partition 0's 180 digits
    return result.loss, float(result.metrics["accuracy"])


@pytest.mark.parametrize("example", ["quickstart-numpy", "quickstart-pytorch"])
def test_client_trains_one_round_on_partition_zero(example: str) -> None:
    app, initial, context = _apps(example)

    before_loss, _ = _evaluate(app, initial, context)
    fit = _fit(app, initial, context, server_round=1)
    after_loss, accuracy = _evaluate(app, fit.parameters, context)

    assert fit.num_examples == 144  # 80% of partition 0's 180 digits
    assert "train_loss" in fit.metrics
    shapes = [a.shape for a in parameters_to_ndarrays(initial)]
    assert [a.shape for a in parameters_to_ndarrays(fit.parameters)] == shapes
    assert after_loss < 0.8 * before_loss
    assert 0.0 <= accuracy <= 1.0


@pytest.mark.parametrize("example", ["quickstart-numpy", "quickstart-pytorch"])
def test_training_is_deterministic_per_round(example: str) -> None:
    app, initial, context = _apps(example)

    first = parameters_to_ndarrays(_fit(app, initial, context, server_round=2).parameters)
    again = parameters_to_ndarrays(_fit(app, initial, context, server_round=2).parameters)
    other = parameters_to_ndarrays(_fit(app, initial, context, server_round=3).parameters)

    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_numpy_example_does_not_import_torch() -> None:
    for path in (EXAMPLES / "quickstart-numpy").glob("*.py"):
        assert "torch" not in path.read_text(), path
