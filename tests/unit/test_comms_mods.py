"""message_size_mod and arrays_size_mod log what goes in and out of a ClientApp."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from stamen.app import Context
from stamen.client.mod import arrays_size_mod, message_size_mod
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict


def run(mod, reply_content: RecordDict | None) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": np.zeros((10, 10), np.float32)}),  # 400 + 1 bytes
            "config": ConfigRecord({"lr": 0.1, "name": "abc", "flag": True}),  # 10 + 7 + 5
        }
    )
    msg = Message(content, 1, MessageType.TRAIN)

    def app(m: Message, c: Context) -> Message:
        if reply_content is None:
            return Message(error=Error(ErrorCode.CLIENT_APP_RAISED, "x"), reply_to=m)
        return Message(reply_content, reply_to=m)

    return mod(msg, Context(1, 1, {}, {}, {}), app)


def test_message_size_mod_counts_arrays_numbers_strings_and_keys(caplog) -> None:
    reply = RecordDict({"m": MetricRecord({"acc": [0.5, 0.7], "n": 3})})  # 3 + 16, 1 + 8
    with caplog.at_level(logging.INFO):
        run(message_size_mod, reply)
    assert "Incoming message size: 423 bytes" in caplog.text
    assert "Outgoing message size: 28 bytes" in caplog.text


def test_arrays_size_mod_reports_elements_and_bytes(caplog) -> None:
    reply = RecordDict({"out": ArrayRecord({"a": np.zeros(3), "bb": np.zeros((2, 2), np.int8)})})
    with caplog.at_level(logging.INFO):
        out = run(arrays_size_mod, reply)
    assert not out.has_error()
    assert "{'arrays': {'elements': 100, 'bytes': 401}}" in caplog.text
    assert "Total array elements received: 401 bytes" in caplog.text
    assert "{'out': {'elements': 7, 'bytes': 31}}" in caplog.text


@pytest.mark.parametrize("mod", [arrays_size_mod, message_size_mod])
def test_size_mods_pass_error_replies_through(mod, caplog) -> None:
    with caplog.at_level(logging.INFO):
        assert run(mod, None).has_error()
