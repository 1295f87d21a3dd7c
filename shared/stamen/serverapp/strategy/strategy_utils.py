"""What Message-API strategies share: sampling, reply checks, weighted averages, log lines.

Names and signatures are Flower 1.42's. The arithmetic is Stamen's: arrays go through
the same blocked float64 kernel as the legacy FedAvg (`weighted_average`), and metrics
are exactly rounded sums, so a result does not depend on the order replies arrived in.
Strategies hand these functions replies already sorted by `order_replies`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

from stamen.common.errors import InconsistentMessageReplies, NotEnoughNodesError
from stamen.common.message import Message
from stamen.common.records import (
    Array,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    MetricValue,
    RecordDict,
    UserConfig,
)
from stamen.server.client_manager import wait_timeout, where_nodes_connect
from stamen.server.client_proxy import node_label, order_key
from stamen.server.grid import Grid
from stamen.server.strategy.aggregate import weighted_average
from stamen.server.strategy.xgb import aggregate_bagging

__all__ = [
    "NodeOrder",
    "aggregate_arrayrecords",
    "aggregate_bagging",
    "aggregate_metricrecords",
    "config_to_str",
    "log_strategy_start_info",
    "node_order",
    "order_replies",
    "sample_nodes",
    "validate_message_reply_consistency",
]

logger = logging.getLogger(__name__)

NodeOrder = dict[int, tuple[int, int, int]]
"""node id -> its place in a sum (partition id first, then node id)."""

POLL_INTERVAL = 0.2
"""Seconds between two reads of the grid's nodes while waiting for enough of them."""


def config_to_str(config: ConfigRecord) -> str:
    """`config` as `{'key': value, ...}`, with bytes values shown as `<bytes>`."""
    content = ", ".join(
        f"'{k}': {'<bytes>' if isinstance(v, bytes) else v}" for k, v in config.items()
    )
    return f"{{{content}}}"


def log_strategy_start_info(
    num_rounds: int,
    arrays: ArrayRecord,
    train_config: ConfigRecord | None,
    evaluate_config: ConfigRecord | None,
) -> None:
    """The lines `Strategy.start` logs first: rounds, model size, both configs."""
    logger.info("\t├── Number of rounds: %d", num_rounds)
    logger.info("\t├── ArrayRecord (%.2f MB)", arrays.nbytes / (1024**2))
    logger.info(
        "\t├── ConfigRecord (train): %s",
        config_to_str(train_config) if train_config else "(empty!)",
    )
    logger.info(
        "\t├── ConfigRecord (evaluate): %s",
        config_to_str(evaluate_config) if evaluate_config else "(empty!)",
    )


def run_config(grid: Grid) -> UserConfig:
    """The run config of the grid's run (empty for a grid that does not say)."""
    run = getattr(grid, "run", None)
    return dict(getattr(run, "run_config", None) or {})


def node_labels(grid: Grid) -> dict[int, str]:
    """How log lines name each node the grid knows: its id and its node_config."""
    return {node.node_id: node_label(node.node_id, node.node_config) for node in grid.get_nodes()}


def node_order(grid: Grid) -> NodeOrder:
    """The sum position of every node online in `grid` now."""
    return {
        node.node_id: order_key(node.node_id, node.node_config)
        for node in grid.get_nodes()
        if node.online
    }


def order_replies(
    replies: Iterable[Message], order: Mapping[int, tuple[int, int, int]]
) -> list[Message]:
    """`replies` by their sender's place in `order` (unknown senders last, by node id).

    Node ids differ between simulation and deployment; partition ids do not, so sums
    taken in this order give bit-identical models in both.
    """

    def key(reply: Message) -> tuple[int, int, int]:
        source = reply.metadata.src_node_id
        return order.get(source, (2, 0, source))

    return sorted(replies, key=key)


def _weight(record: RecordDict, weighting_metric_name: str) -> int | float:
    """The reply's weight: `weighting_metric_name` in its first MetricRecord."""
    metrics = next(iter(record.metric_records.values()), None)
    value = None if metrics is None else metrics.get(weighting_metric_name)
    if value is None:
        raise InconsistentMessageReplies(
            f"Missing required key `{weighting_metric_name}` in the MetricRecord of reply "
            "messages. Cannot average ArrayRecords and MetricRecords. Skipping aggregation."
        )
    if isinstance(value, list):
        raise InconsistentMessageReplies(
            f"Key `{weighting_metric_name}` in the MetricRecord of reply messages must be a "
            "single value (int or float), but a list was found. Skipping aggregation."
        )
    return value


def aggregate_arrayrecords(records: list[RecordDict], weighting_metric_name: str) -> ArrayRecord:
    """The weighted average of the records' ArrayRecords, key by key.

    Each record's weight is the value of `weighting_metric_name` in its (first)
    MetricRecord. Arrays keep their dtype (integer arrays are rounded once at the end;
    Flower returns them as float64).
    """
    arrays = [_arrays_of(record) for record in records]
    if not arrays:
        raise InconsistentMessageReplies("There are no replies to aggregate.")
    keys = list(arrays[0])
    for index, named in enumerate(arrays[1:], start=1):
        if set(named) != set(keys):
            raise InconsistentMessageReplies(
                f"All ArrayRecords must have the same keys for aggregation: reply {index} has "
                f"{sorted(named)}, reply 0 has {sorted(keys)}. Skipping aggregation."
            )
    averages = weighted_average(
        (
            f"reply {index}",
            [named[key].numpy() for key in keys],
            _weight(record, weighting_metric_name),
        )
        for index, (record, named) in enumerate(zip(records, arrays, strict=True))
    )
    return ArrayRecord({key: Array(average) for key, average in zip(keys, averages, strict=True)})


def _arrays_of(record: RecordDict) -> dict[str, Array]:
    named: dict[str, Array] = {}
    for array_record in record.array_records.values():
        named.update(array_record)
    return named


def aggregate_metricrecords(records: list[RecordDict], weighting_metric_name: str) -> MetricRecord:
    """The weighted average of every metric but the weight itself (lists element-wise).

    Sums are exactly rounded (`math.fsum`), so the result does not depend on the order.
    """
    weights = [_weight(record, weighting_metric_name) for record in records]
    total = math.fsum(weights)
    if total == 0:
        raise InconsistentMessageReplies(
            f"The replies' `{weighting_metric_name}` add up to 0: nothing to weight "
            "the average by. Skipping aggregation."
        )
    collected: dict[str, list[tuple[float, MetricValue]]] = {}
    for record, weight in zip(records, weights, strict=True):
        for metrics in record.metric_records.values():
            for key, value in metrics.items():
                if key != weighting_metric_name:
                    collected.setdefault(key, []).append((weight, value))
    aggregated = MetricRecord()
    for key, pairs in collected.items():
        aggregated[key] = _weighted_metric(key, pairs, total)
    return aggregated


def _weighted_metric(key: str, pairs: list[tuple[float, MetricValue]], total: float) -> Any:
    first = pairs[0][1]
    if not isinstance(first, list):
        scalars = [(w, v) for w, v in pairs if not isinstance(v, list)]
        if len(scalars) != len(pairs):
            raise InconsistentMessageReplies(
                f"Metric `{key}` is a number in some replies, a list in others."
            )
        return math.fsum(w * v for w, v in scalars) / total
    lists = [(w, v) for w, v in pairs if isinstance(v, list)]
    if len(lists) != len(pairs) or any(len(v) != len(first) for _, v in lists):
        raise InconsistentMessageReplies(
            f"Metric `{key}` has lists of different lengths in the replies."
        )
    return [math.fsum(w * v[i] for w, v in lists) / total for i in range(len(first))]


def sample_nodes(
    grid: Grid,
    min_available_nodes: int,
    sample_size: int,
    *,
    timeout: float | None = None,
) -> tuple[list[int], list[int]]:
    """`sample_size` node ids drawn with `random.sample`, and all the online node ids.

    First waits until `max(min_available_nodes, sample_size)` nodes are online, at most
    `timeout` seconds (default: the run config's 'min-available-timeout', else 300; Flower
    waits forever, Stamen raises NotEnoughNodesError). The waiting lines name the Fleet
    address nodes should use when the grid knows it. Nodes
    are listed by partition id, so a seeded `random` draws the same partitions in
    simulation and in deployment.
    """
    needed = max(min_available_nodes, sample_size)
    if timeout is None:
        timeout = wait_timeout(run_config(grid))
    deadline = time.monotonic() + timeout
    next_log = 0.0
    while True:
        order = node_order(grid)
        all_nodes = sorted(order, key=order.__getitem__)
        if len(all_nodes) >= needed:
            return random.sample(all_nodes, sample_size), all_nodes
        now = time.monotonic()
        if now >= deadline:
            raise NotEnoughNodesError(needed, len(all_nodes), timeout)
        if now >= next_log:
            logger.info(
                "Waiting for nodes to connect: %d connected (minimum required: %d)%s.",
                len(all_nodes),
                needed,
                where_nodes_connect(grid),
            )
            next_log = now + 1.0
        time.sleep(min(POLL_INTERVAL, deadline - now))


def validate_message_reply_consistency(
    replies: list[RecordDict], weighted_by_key: str, check_arrayrecord: bool
) -> None:
    """Raise InconsistentMessageReplies unless every reply has one MetricRecord with the
    same keys, `weighted_by_key` among them as a number, and (if `check_arrayrecord`)
    one ArrayRecord with the same keys."""
    if check_arrayrecord:
        if any(len(reply.array_records) != 1 for reply in replies):
            raise InconsistentMessageReplies(
                "Expected exactly one ArrayRecord in replies. Skipping aggregation."
            )
        _same_keys(replies, next(iter(replies[0].array_records)), "ArrayRecords")
    if any(len(reply.metric_records) != 1 for reply in replies):
        raise InconsistentMessageReplies(
            "Expected exactly one MetricRecord in replies, but found more. Skipping aggregation."
        )
    record_key = next(iter(replies[0].metric_records))
    all_keys = _same_keys(replies, record_key, "MetricRecords")
    if weighted_by_key not in all_keys:
        raise InconsistentMessageReplies(
            f"Missing required key `{weighted_by_key}` in the MetricRecord of reply messages. "
            "Cannot average ArrayRecords and MetricRecords. Skipping aggregation."
        )
    for reply in replies:
        _weight(reply, weighted_by_key)


def _same_keys(replies: list[RecordDict], record_key: str, what: str) -> set[str]:
    all_keys = set(replies[0][record_key])
    for reply in replies[1:]:
        record = reply.get(record_key)
        if record is None or set(record) != all_keys:
            raise InconsistentMessageReplies(
                f"All {what} must have the same keys for aggregation. "
                "This condition wasn't met. Skipping aggregation."
            )
    return all_keys
