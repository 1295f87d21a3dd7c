"""Mods that log how much a ClientApp receives and sends: `message_size_mod`,
`arrays_size_mod`.

Sizes are counted as Flower counts them: array data bytes, 8 bytes per number (and per
list element) in metric and config records, the length of strings and bytes, 1 byte per
bool, plus the bytes of every key.
"""

from __future__ import annotations

import logging
from typing import Any

from stamen.client.client_app import ClientAppCallable
from stamen.common.context import Context
from stamen.common.message import Message
from stamen.common.records import ArrayRecord

__all__ = ["arrays_size_mod", "message_size_mod"]

logger = logging.getLogger(__name__)


def message_size_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Log the size in bytes of the incoming message's content and of the reply's."""
    logger.info("Incoming message size: %i bytes", _content_bytes(msg))
    reply = call_next(msg, ctxt)
    logger.info("Outgoing message size: %i bytes", _content_bytes(reply))
    return reply


def arrays_size_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Log, per ArrayRecord, the number of elements and bytes received and sent."""
    _log_arrays(msg, "Incoming", "received")
    reply = call_next(msg, ctxt)
    _log_arrays(reply, "Outgoing", "sent")
    return reply


def _log_arrays(msg: Message, direction: str, verb: str) -> None:
    stats = _array_stats(msg)
    if stats:
        logger.info("%s `ArrayRecord` size statistics:", direction)
        logger.info("%s", stats)
    logger.info("Total array elements %s: %i bytes", verb, sum(s["bytes"] for s in stats.values()))


def _array_stats(msg: Message) -> dict[str, dict[str, int]]:
    if msg.has_error():
        return {}
    return {
        name: {
            "elements": sum(_elements(array.shape) for array in record.values()),
            "bytes": record_bytes(record),
        }
        for name, record in msg.content.array_records.items()
    }


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _content_bytes(msg: Message) -> int:
    if msg.has_error():
        return 0
    return sum(record_bytes(record) for record in msg.content.values())


def record_bytes(record: Any) -> int:
    """The bytes a record holds, keys included (Flower's `count_bytes`)."""
    if isinstance(record, ArrayRecord):
        return sum(array.nbytes + len(key) for key, array in record.items())
    return sum(len(key) + _value_bytes(value) for key, value in record.items())


def _value_bytes(value: Any) -> int:
    if isinstance(value, list):
        return sum(_value_bytes(item) for item in value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, str | bytes):
        return len(value)
    return 8
