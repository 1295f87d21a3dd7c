"""run_task: the wire round trip a worker does for every task."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from stamen.client import (
    ClientApp,
    FitIns,
    NDArrays,
    NumPyClient,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.client.runtime import run_task
from stamen.client.task import AppTask
from stamen.codec import decode_message, encode_message
from stamen.common.context import Context
from stamen.common.legacy import fitins_to_recorddict, recorddict_to_fitres
from stamen.common.message import ErrorCode, Message
from stamen.common.records import ConfigRecord, MetricRecord, RecordDict


class Doubler(NumPyClient):
    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        self.context.state["rounds"] = MetricRecord({"n": 1})
        return [p * 2 for p in parameters], 4, {}


APP = ClientApp(client_fn=lambda context: Doubler())


def make_task(message: Message) -> AppTask:
    envelope, objects = encode_message(message)
    return AppTask(envelope, objects, Context(run_id=1, node_id=5, node_config={}))


def train_message() -> Message:
    params = ndarrays_to_parameters([np.arange(1000, dtype=np.float32)])
    return Message(fitins_to_recorddict(FitIns(params, {})), dst_node_id=5, message_type="train")


def test_round_trip_returns_reply_and_state() -> None:
    message = train_message()
    result = run_task(APP, make_task(message))
    reply = decode_message(result.envelope, result.objects)
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    res = recorddict_to_fitres(reply.content)
    [array] = parameters_to_ndarrays(res.parameters)
    np.testing.assert_array_equal(array, np.arange(1000) * 2)
    assert res.num_examples == 4
    assert result.state["rounds"] == MetricRecord({"n": 1})


def test_user_error_comes_back_as_error_reply() -> None:
    result = run_task(ClientApp(), make_task(train_message()))
    reply = decode_message(result.envelope, result.objects)
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "'train'" in reply.error.reason


def test_truncated_object_gets_an_error_reply_not_an_exception() -> None:
    message = train_message()
    task = make_task(message)
    truncated = {key: bytes(value)[:-4] for key, value in task.objects.items()}
    assert truncated, "the train message carries an array object"
    result = run_task(APP, dataclasses.replace(task, objects=truncated))
    reply = decode_message(result.envelope, result.objects)
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    assert reply.error.code == ErrorCode.UNKNOWN
    assert "could not be decoded" in reply.error.reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda task: dataclasses.replace(task, objects={}),
        lambda task: dataclasses.replace(
            task, envelope=dataclasses.replace(task.envelope, payload=b"\xff\xff\xff")
        ),
    ],
    ids=["missing-object", "garbage-payload"],
)
def test_undecodable_task_gets_an_error_reply(damage: Callable[[AppTask], AppTask]) -> None:
    result = run_task(APP, damage(make_task(train_message())))
    reply = decode_message(result.envelope, result.objects)
    assert reply.has_error()
    assert "could not be decoded" in reply.error.reason
    assert result.state == RecordDict()


def test_unencodable_reply_becomes_an_error_reply() -> None:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return message.create_reply(RecordDict({"text": ConfigRecord({"s": "\ud800"})}))

    message = Message(RecordDict(), dst_node_id=5, message_type="query")
    result = run_task(app, make_task(message))
    reply = decode_message(result.envelope, result.objects)
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "reply could not be encoded" in reply.error.reason
