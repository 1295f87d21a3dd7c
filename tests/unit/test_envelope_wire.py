"""Pushed and pulled messages leave as their envelopes' bytes: the same bytes as before."""

from __future__ import annotations

import numpy as np
import pytest
from stamen.codec import encode_message
from stamen.codec.proto import envelope_from_proto, envelope_to_proto, envelope_to_wire
from stamen.common.message import Error, Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.proto.stamen import v1 as pb


def _messages() -> list[Message]:
    content = RecordDict(
        {
            "model": ArrayRecord([np.arange(640, dtype=np.float32), np.ones(10)]),
            "config": ConfigRecord({"server_round": 3, "lr": 0.1, "name": "é"}),
            "metrics": MetricRecord({"loss": 0.5, "counts": [1, 2, 3]}),
        }
    )
    train = Message(content, dst_node_id=7, message_type=MessageType.TRAIN, group_id="g")
    train.metadata.run_id = 1 << 63
    train.metadata.ttl = 12.5
    failed = Message(Error(code=3, reason="client failed"), reply_to=train)
    empty = Message(RecordDict(), dst_node_id=1, message_type="query.ping")
    return [train, failed, empty]


@pytest.mark.parametrize("message", _messages(), ids=["content", "error", "empty"])
def test_the_wire_bytes_are_the_message_that_envelope_to_proto_makes(message: Message) -> None:
    envelope, _ = encode_message(message)
    wire = envelope_to_wire(envelope)
    assert wire == bytes(envelope_to_proto(envelope))  # byte for byte
    assert envelope_from_proto(pb.Message.parse(wire)) == envelope  # the round trip holds


def test_encoded_messages_read_as_a_pull_messages_response() -> None:
    envelopes = [encode_message(m)[0] for m in _messages()]
    sent = bytes(pb.EncodedMessages(messages=[envelope_to_wire(e) for e in envelopes]))
    before = pb.PullMessagesResponse(messages=[envelope_to_proto(e) for e in envelopes])
    assert pb.PullMessagesResponse.parse(sent) == before
    assert bytes(pb.EncodedMessages()) == bytes(pb.PullMessagesResponse())  # none waiting


def test_an_encoded_push_reads_as_either_push_request_byte_for_byte() -> None:
    envelopes = [encode_message(m)[0] for m in _messages()]
    sent = bytes(pb.EncodedPush(id=42, messages=[envelope_to_wire(e) for e in envelopes]))
    messages = [envelope_to_proto(e) for e in envelopes]
    assert sent == bytes(pb.PushMessagesRequest(node_id=42, messages=messages))
    assert sent == bytes(pb.PushInstructionsRequest(run_id=42, messages=messages))
