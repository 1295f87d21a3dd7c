"""reply_metadata: the one way every reply (normal or error, node or SuperLink) is addressed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from stamen.codec import decode_message, encode_message
from stamen.common.errors import InvalidMessageError
from stamen.common.message import Error, ErrorCode, Message, Metadata, reply_metadata
from stamen.common.records import RecordDict
from stamen.superlink.core import check_reply, error_reply

INSTRUCTION = Metadata(
    run_id=3,
    message_id="ins",
    src_node_id=1,
    dst_node_id=42,
    reply_to_message_id="",
    group_id="round-1",
    created_at=1_000.0,
    ttl=60.0,
    message_type="train",
)


def test_a_reply_is_addressed_back_and_keeps_run_group_and_type() -> None:
    meta = reply_metadata(INSTRUCTION, now=1_010.0)
    assert (meta.src_node_id, meta.dst_node_id) == (42, 1)
    assert meta.reply_to_message_id == "ins"
    assert meta.message_id not in {"", "ins"}
    assert (meta.run_id, meta.group_id, meta.message_type) == (3, "round-1", "train")
    assert meta.created_at == 1_010.0


def test_a_reply_lives_what_is_left_of_its_instruction() -> None:
    assert reply_metadata(INSTRUCTION, now=1_010.0).ttl == 50.0
    assert reply_metadata(INSTRUCTION, now=1_010.0, ttl=5).ttl == 5.0
    assert reply_metadata(INSTRUCTION, now=1_010.0, ttl=500).ttl == 50.0  # capped
    assert reply_metadata(INSTRUCTION, now=2_000.0).ttl == 0.0  # expired


def test_the_superlinks_error_reply_follows_the_same_rule() -> None:
    envelope, _ = encode_message(Message(RecordDict(), metadata=INSTRUCTION))
    stored = error_reply(envelope, Error(ErrorCode.NODE_UNAVAILABLE, "gone"), now=1_020.0)
    reply = decode_message(stored.envelope, {})
    assert reply.metadata.ttl == 40.0
    assert reply.metadata.reply_to_message_id == "ins"
    assert reply.error.code == ErrorCode.NODE_UNAVAILABLE
    assert stored.expires_at == 1_080.0  # kept for the ServerApp one instruction TTL


def test_a_late_reply_with_nothing_left_of_its_ttl_is_still_a_valid_reply() -> None:
    envelope, _ = encode_message(Message(RecordDict(), metadata=INSTRUCTION))
    late = error_reply(envelope, Error(ErrorCode.MESSAGE_EXPIRED, "late"), now=2_000.0).envelope
    assert late.metadata.ttl == 0.0
    check_reply(late, 42, envelope)
    negative = replace(late, metadata=replace(late.metadata, ttl=-1.0))
    with pytest.raises(InvalidMessageError, match=r"ttl must not be negative, got -1\.0"):
        check_reply(negative, 42, envelope)
