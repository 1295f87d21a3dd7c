"""Guard rails against a bad node: replies whose numbers cannot be right become failures.

Authentication says who a node is, not that its results are honest or sane. Before a
reply reaches the strategy, the Grid screens it: every example count (`num-examples` in a
MetricRecord, `num_examples` in the legacy FitRes/EvaluateRes records) must be an integer
from 0 to `max-num-examples`, every metric and legacy loss value finite and at most
`max-metric-value` in magnitude, and every floating-point array finite. A reply that
fails is replaced by an error reply naming the reason, so both strategy styles count it
as a failure of that round and aggregate the rest. This does not stop a node that sends
plausible but poisoned values: for untrusted federations use a robust strategy (Krum,
Bulyan, trimmed mean, median); see SECURITY.md.

The bounds come from the run config (`max-num-examples`, `max-metric-value`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from stamen.common.message import Error, ErrorCode, Message
from stamen.common.records import ArrayRecord, RecordDict

__all__ = ["DEFAULT_LIMITS", "ReplyLimits", "screen_reply"]

logger = logging.getLogger(__name__)

_EXAMPLE_KEYS = frozenset({"num-examples", "num_examples"})
_CHUNK = 1 << 22  # elements checked at a time, so the check's scratch memory stays small


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    max_num_examples: int = 10**12
    max_metric_value: float = 1e30

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> ReplyLimits:
        """The limits a run asks for, where its config sets them (ignored if not numbers)."""
        examples = config.get("max-num-examples", DEFAULT_LIMITS.max_num_examples)
        metric = config.get("max-metric-value", DEFAULT_LIMITS.max_metric_value)
        if not _is_number(examples) or not examples >= 0:
            examples = DEFAULT_LIMITS.max_num_examples
        if not _is_number(metric) or not metric > 0:
            metric = DEFAULT_LIMITS.max_metric_value
        return cls(int(examples), float(metric))


DEFAULT_LIMITS = ReplyLimits()


def screen_reply(reply: Message, limits: ReplyLimits = DEFAULT_LIMITS) -> Message:
    """`reply` itself, or an error reply in its place saying what is wrong with it."""
    if reply.has_error():
        return reply
    problem = _problem(reply.content, limits)
    if problem is None:
        return reply
    node = reply.metadata.src_node_id
    logger.warning(
        "reply of node %d to message %s counts as a failure: %s",
        node,
        reply.metadata.reply_to_message_id,
        problem,
        extra={"run_id": reply.metadata.run_id, "node_id": node},
    )
    reason = f"node {node}: reply refused by the ServerApp's guard rails: {problem}"
    return Message(error=Error(ErrorCode.CLIENT_APP_RAISED, reason), metadata=reply.metadata)


def _problem(content: RecordDict, limits: ReplyLimits) -> str | None:
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            for key, array in record.items():
                if not _finite(array.numpy()):
                    return f"array {name}/{key} holds NaN or infinite values"
            continue
        for key, value in record.items():
            problem = _value_problem(key, value, limits)
            if problem is not None:
                return f"{name}/{key}: {problem}"
    return None


def _value_problem(key: str, value: object, limits: ReplyLimits) -> str | None:
    if key in _EXAMPLE_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            return f"the number of examples must be an integer, got {value!r}"
        if not 0 <= value <= limits.max_num_examples:
            return (
                f"the number of examples {value:g} is outside 0..{limits.max_num_examples} "
                "(run config max-num-examples)"
            )
        return None
    for number in _numbers(value):
        if not math.isfinite(number):
            return f"value {number} is not finite"
        if abs(number) > limits.max_metric_value:
            return f"value {number:g} exceeds {limits.max_metric_value:g} (max-metric-value)"
    return None


def _numbers(value: object) -> Iterable[float]:
    if isinstance(value, bool):
        return ()
    if isinstance(value, int | float):
        return (float(value),)
    if isinstance(value, list):
        return (float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool))
    return ()


def _finite(array: np.ndarray[Any, Any]) -> bool:
    if array.dtype.kind not in "fc":
        return True
    flat = array.reshape(-1)
    return all(bool(np.isfinite(flat[i : i + _CHUNK]).all()) for i in range(0, flat.size, _CHUNK))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
