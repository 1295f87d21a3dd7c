"""Guard rails against a bad node (issue 15, item 4): replies with impossible numbers are
failures of their round, and the poisoning attack of the issue does no harm under a cap."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from serverapp_nodes import fake_nodes
from stamen.client import ClientApp, NumPyClient
from stamen.common import ndarrays_to_parameters, parameters_to_ndarrays
from stamen.common.context import Context
from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.runner.runner import run_serverapp
from stamen.runner.screening import ReplyLimits, screen_reply
from stamen.server import ServerApp, ServerConfig
from stamen.server.strategy import FedAvg
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.transport.memory.apis import MemoryFleet, MemoryServerAppIo

pytestmark = pytest.mark.timeout(60)


def _reply(content: RecordDict) -> Message:
    instruction = Message(RecordDict(), dst_node_id=5, message_type=MessageType.TRAIN)
    reply = instruction.create_reply(content)
    reply.metadata.src_node_id = 5
    return reply


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (RecordDict({"m": MetricRecord({"num-examples": -1})}), "outside 0..1000"),
        (RecordDict({"m": MetricRecord({"num-examples": 1001})}), "outside 0..1000"),
        (RecordDict({"m": MetricRecord({"num-examples": 2.5})}), "must be an integer"),
        (RecordDict({"m": MetricRecord({"loss": math.inf})}), "is not finite"),
        (RecordDict({"m": MetricRecord({"acc": [0.5, math.nan]})}), "is not finite"),
        (RecordDict({"m": MetricRecord({"loss": 1e9})}), "exceeds 1e+06"),
        (
            RecordDict({"fitres.num_examples": ConfigRecord({"num_examples": 10**9})}),
            "outside 0..1000",
        ),
        (RecordDict({"evaluateres.loss": ConfigRecord({"loss": math.nan})}), "not finite"),
        (
            RecordDict({"model": ArrayRecord({"w": np.array([1.0, np.inf], np.float32)})}),
            "array model/w holds NaN or infinite values",
        ),
    ],
)
def test_impossible_numbers_make_the_reply_a_failure(content: RecordDict, problem: str) -> None:
    screened = screen_reply(
        _reply(content), ReplyLimits(max_num_examples=1000, max_metric_value=1e6)
    )
    assert screened.has_error()
    assert problem in screened.error.reason
    assert screened.error.reason.startswith("node 5: reply refused by the ServerApp's guard rails")
    assert screened.metadata.reply_to_message_id  # still answers its instruction


def test_sane_replies_and_error_replies_pass_unchanged() -> None:
    sane = _reply(
        RecordDict(
            {
                "model": ArrayRecord({"w": np.arange(6.0), "i": np.array([2**62])}),
                "m": MetricRecord({"num-examples": 1000, "loss": -3.5, "acc": [0.1, 0.2]}),
                "c": ConfigRecord({"note": "ok", "flag": True, "blob": b"\xff"}),
            }
        )
    )
    limits = ReplyLimits(max_num_examples=1000, max_metric_value=1e6)
    assert screen_reply(sane, limits) is sane
    failed = screen_reply(_reply(RecordDict({"m": MetricRecord({"loss": math.nan})})), limits)
    assert screen_reply(failed, limits) is failed


def test_limits_come_from_the_run_config() -> None:
    assert ReplyLimits.from_run_config({"max-num-examples": 50, "max-metric-value": 2.0}) == (
        ReplyLimits(50, 2.0)
    )
    defaults = ReplyLimits()
    assert ReplyLimits.from_run_config({"max-num-examples": "many"}) == defaults
    assert ReplyLimits.from_run_config({"max-metric-value": -1.0}) == defaults


# --- the attack of the issue, over the real Grid ---------------------------------------------


class Honest(NumPyClient):
    def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
        return [p + 1.0 for p in parameters], 10, {}


class Poisoner(NumPyClient):
    def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
        return [np.full_like(p, 1e6) for p in parameters], 1_000_000, {}


@pytest.fixture
async def link() -> AsyncIterator[SuperLink]:
    async with open_superlink(":memory:") as link:
        yield link


async def _train_once(link: SuperLink, run_config: dict[str, Any]) -> tuple[np.ndarray, int]:
    """One round of FedAvg over two honest nodes and a poisoner: the global model and
    the round's failures."""
    found: dict[str, Any] = {}

    class Recording(FedAvg):
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            found["model"] = parameters_to_ndarrays(parameters)[0]
            found["failures"] = len(failures)
            return parameters, metrics

    strategy = Recording(
        fraction_evaluate=0.0,
        min_fit_clients=3,
        min_available_clients=3,
        initial_parameters=ndarrays_to_parameters([np.zeros(4)]),
    )
    server = ServerApp(config=ServerConfig(num_rounds=1), strategy=strategy)
    apps = {
        "honest": ClientApp(client_fn=lambda context: Honest().to_client()),
        "poisoner": ClientApp(client_fn=lambda context: Poisoner().to_client()),
    }
    configs = [{"kind": "honest"}, {"kind": "honest"}, {"kind": "poisoner"}]
    kinds: dict[int, str] = {}

    def answer(node_id: int, instruction: Message) -> Message:
        context = Context(instruction.metadata.run_id, node_id, {}, RecordDict(), run_config)
        return apps[kinds[node_id]](instruction, context)

    async with fake_nodes(MemoryFleet(link.fleet), configs, answer) as node_ids:
        kinds.update(zip(node_ids, (c["kind"] for c in configs), strict=True))
        await run_serverapp(
            MemoryServerAppIo(link.serverappio),
            server,
            server_app_ref="server:app",
            run_config=run_config,
        )
    return found["model"], found["failures"]


async def test_a_poisoner_over_the_cap_is_a_failure_and_the_model_stays_honest(
    link: SuperLink,
) -> None:
    model, failures = await _train_once(link, {"max-num-examples": 10_000})
    assert failures == 1
    np.testing.assert_array_equal(model, np.ones(4))


async def test_without_a_cap_that_fits_the_poisoner_would_win(link: SuperLink) -> None:
    model, failures = await _train_once(link, {})
    assert failures == 0
    assert model[0] > 9e5  # what the cap above prevents
