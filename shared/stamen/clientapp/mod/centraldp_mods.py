"""Client-side clipping for central DP: `fixedclipping_mod` and `adaptiveclipping_mod`.

They pair with the server's `DifferentialPrivacyClientSide*Clipping` wrappers, which send
the clipping norm in the training ConfigRecord (key "clipping_norm"). The mod lets the
ClientApp train, then clips the update (reply - received arrays) to that norm before the
reply leaves the node. Put it last among mods that change the arrays. Messages other
than training messages pass through untouched.
"""

from __future__ import annotations

import logging

from stamen.client.client_app import ClientAppCallable
from stamen.common.context import Context
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord
from stamen.server.strategy.dp import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_update

__all__ = ["adaptiveclipping_mod", "fixedclipping_mod"]

logger = logging.getLogger(__name__)


def fixedclipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Clip the training update to the norm the server's
    `DifferentialPrivacyClientSideFixedClipping` sent."""
    return _clipping("fixedclipping_mod", msg, ctxt, call_next, report_bit=False)


def adaptiveclipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Clip the training update to the norm the server's
    `DifferentialPrivacyClientSideAdaptiveClipping` sent, and report in the reply's
    MetricRecord whether it clipped ("norm_bit": 1 or 0) so the server can adapt the norm."""
    return _clipping("adaptiveclipping_mod", msg, ctxt, call_next, report_bit=True)


def _clipping(
    name: str, msg: Message, ctxt: Context, call_next: ClientAppCallable, report_bit: bool
) -> Message:
    if msg.metadata.message_type.split(".", 1)[0] != MessageType.TRAIN:
        return call_next(msg, ctxt)
    if len(msg.content.array_records) != 1:
        return refuse(msg, count_error(name, msg, ArrayRecord))
    if len(msg.content.config_records) != 1:
        return refuse(msg, count_error(name, msg, ConfigRecord))
    config = next(iter(msg.content.config_records.values()))
    clipping_norm = config.get(KEY_CLIPPING_NORM)
    if isinstance(clipping_norm, bool) or not isinstance(clipping_norm, int | float):
        return refuse(
            msg,
            f"{name} requires the key '{KEY_CLIPPING_NORM}' to be present in the "
            "ConfigRecord, but it was not found. Please ensure the "
            "`DifferentialPrivacyClientSideFixedClipping` wrapper is used in the ServerApp.",
        )
    received = next(iter(msg.content.array_records.values()))
    reply = call_next(msg, ctxt)
    if reply.has_error():
        return reply
    if len(reply.content.array_records) != 1:
        return refuse(msg, count_error(name, reply, ArrayRecord))
    if report_bit and len(reply.content.metric_records) != 1:
        return refuse(msg, count_error(name, reply, MetricRecord))
    key, sent = next(iter(reply.content.array_records.items()))
    clipped, was_clipped = clip_local_update(name, received, sent, float(clipping_norm))
    if clipped is None:
        return refuse(msg, key_mismatch_error(name))
    logger.info("%s: parameters are clipped by value: %.4f.", name, clipping_norm)
    reply.content[key] = clipped
    if report_bit:
        metrics = next(iter(reply.content.metric_records.values()))
        metrics[KEY_NORM_BIT] = int(was_clipped)
    return reply


def clip_local_update(
    name: str, received: ArrayRecord, sent: ArrayRecord, clipping_norm: float
) -> tuple[ArrayRecord | None, bool]:
    """`sent` with its update from `received` clipped; None if their keys differ."""
    if list(received.keys()) != list(sent.keys()):
        return None, False
    keys = list(sent.keys())
    arrays, was_clipped = clip_update(
        [sent[k].numpy() for k in keys], [received[k].numpy() for k in keys], clipping_norm
    )
    return ArrayRecord({k: Array(a) for k, a in zip(keys, arrays, strict=True)}), was_clipped


def refuse(msg: Message, reason: str) -> Message:
    """An error reply to `msg`, logged: the mod's precondition does not hold."""
    logger.error(reason)
    return Message(error=Error(ErrorCode.CLIENT_APP_RAISED, reason), reply_to=msg)


def count_error(name: str, msg: Message, record_type: type) -> str:
    count = sum(isinstance(record, record_type) for record in msg.content.values())
    kind = record_type.__name__
    return f"{name} expects exactly one {kind}, but found {count} {kind}(s)."


def key_mismatch_error(name: str) -> str:
    return (
        f"{name} expects the keys in the ArrayRecord of the reply message to match those "
        "from the ArrayRecord that the ClientApp received, but they do not."
    )
