"""Message-API FedAvg and `Strategy.start`: Flower's semantics, deterministic sums."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.client import ClientApp
from stamen.common.context import Context
from stamen.common.errors import ConfigError, InconsistentMessageReplies, NotEnoughNodesError
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.serverapp.strategy import FedAvg, Result
from stamen.serverapp.strategy import strategy_utils as utils

app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    """Adds (partition id + 1) to every array; weight = 10 * (partition id + 1)."""
    pid = int(context.node_config["partition-id"])
    arrays = message.content["arrays"]
    out = ArrayRecord({k: a.numpy() + (pid + 1) for k, a in arrays.items()})
    server_round = message.content["config"]["server-round"]
    metrics = MetricRecord(
        {"loss": float(pid), "round": server_round, "num-examples": 10 * (pid + 1)}
    )
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    if pid == 3:
        raise RuntimeError("evaluation data missing")
    metrics = MetricRecord({"acc": [0.5, float(pid)], "num-examples": 1 + pid})
    return Message(RecordDict({"m": metrics}), reply_to=message)


def reply(
    node_id: int, arrays: dict[str, np.ndarray] | None, weight: float, **metrics: float
) -> Message:
    instruction = Message(RecordDict(), node_id, MessageType.TRAIN)
    content = RecordDict({"metrics": MetricRecord({"num-examples": weight, **metrics})})
    if arrays is not None:
        content["arrays"] = ArrayRecord(arrays)
    return Message(content, reply_to=instruction)


def error_reply(node_id: int, reason: str) -> Message:
    instruction = Message(RecordDict(), node_id, MessageType.TRAIN)
    return Message(error=Error(ErrorCode.CLIENT_APP_RAISED, reason), reply_to=instruction)


def test_start_runs_rounds_and_returns_the_weighted_average(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grid = InProcessGrid.with_apps(app, [40, 30, 20, 10])
    initial = ArrayRecord({"w": np.zeros((2, 3), np.float32), "step": np.array([1], np.int64)})
    seen: list[int] = []

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        seen.append(server_round)
        return MetricRecord({"norm": float(np.abs(arrays["w"].numpy()).sum())})

    with caplog.at_level(logging.INFO, logger="stamen.serverapp"):
        result = FedAvg().start(grid, initial, num_rounds=2, evaluate_fn=central)

    assert isinstance(result, Result)
    # Each round adds sum((p+1) * 10(p+1)) / sum(10(p+1)) = 30/10 = 3.
    np.testing.assert_array_equal(result.arrays["w"].numpy(), np.full((2, 3), 6, np.float32))
    assert result.arrays["w"].dtype == "<f4"
    assert result.arrays["step"].numpy().tolist() == [7]  # integer arrays keep their dtype
    assert seen == [0, 1, 2]
    assert set(result.train_metrics_clientapp) == {1, 2}
    train_metrics = result.train_metrics_clientapp[2]
    assert train_metrics["loss"] == pytest.approx((0 * 10 + 1 * 20 + 2 * 30 + 3 * 40) / 100)
    assert train_metrics["round"] == pytest.approx(2.0)
    assert "num-examples" not in train_metrics
    # Node 3 fails evaluation: the others' lists are averaged element-wise.
    assert result.evaluate_metrics_clientapp[1]["acc"] == pytest.approx([0.5, (0 + 2 + 6) / 6])
    log = caplog.text
    for line in (
        "Starting FedAvg strategy:",
        "Number of rounds: 2",
        "[ROUND 2/2]",
        "configure_train: Sampled 4 nodes (out of 4)",
        "aggregate_train: Received 4 results and 0 failures",
        "aggregate_evaluate: Received 3 results and 1 failures",
        "Received error in reply from node 10: RuntimeError: evaluation data missing",
        "Strategy execution finished in",
        "Aggregated ClientApp-side Train Metrics:",
    ):
        assert line in log


def test_configure_train_samples_a_fraction_and_injects_the_round() -> None:
    grid = InProcessGrid.with_apps(app, range(100, 110))
    arrays = ArrayRecord({"w": np.ones(3, np.float32)})
    config = ConfigRecord({"lr": 0.1})
    messages = list(FedAvg(fraction_train=0.5).configure_train(4, arrays, config, grid))
    assert len(messages) == 5
    assert len({m.metadata.dst_node_id for m in messages}) == 5
    assert all(m.metadata.message_type == MessageType.TRAIN for m in messages)
    content = messages[0].content
    assert content["arrays"] is arrays
    assert dict(content["config"]) == {"lr": 0.1, "server-round": 4}
    assert config["server-round"] == 4  # Flower writes the round into the caller's config


def test_sampling_is_random_sample_over_nodes_in_partition_order() -> None:
    grid = InProcessGrid.with_apps(app, [9, 5, 7, 3, 1])  # partition ids 0..4 in this order
    random.seed(3)
    node_ids, all_nodes = utils.sample_nodes(grid, 2, 3)
    assert all_nodes == [9, 5, 7, 3, 1]
    random.seed(3)
    assert node_ids == random.sample(all_nodes, 3)


def test_fraction_zero_skips_the_phase(caplog: pytest.LogCaptureFixture) -> None:
    grid = InProcessGrid.with_apps(app, [1, 2])
    with caplog.at_level(logging.WARNING):
        strategy = FedAvg(fraction_train=0.0, fraction_evaluate=0.0)
    assert (strategy.min_train_nodes, strategy.min_evaluate_nodes) == (0, 0)
    assert "Federated training will be skipped" in caplog.text
    arrays = ArrayRecord({"w": np.ones(2)})
    result = strategy.start(grid, arrays, num_rounds=1)
    assert grid.sent == []
    assert result.arrays == ArrayRecord()
    assert result.train_metrics_clientapp == {}


def test_aggregate_train_does_not_depend_on_arrival_order() -> None:
    rng = np.random.default_rng(0)
    grid = InProcessGrid.with_apps(app, [70, 50, 60, 80])
    strategy = FedAvg()
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    replies = [
        reply(node, {"a": rng.standard_normal(1000).astype(np.float32)}, float(rng.uniform(1, 9)))
        for node in (70, 50, 60, 80)
    ]
    first, _ = strategy.aggregate_train(1, replies)
    second, _ = strategy.aggregate_train(1, replies[::-1])
    assert first is not None
    assert second is not None
    assert first["a"].numpy().tobytes() == second["a"].numpy().tobytes()


def test_failures_are_counted_and_all_failures_aggregate_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = FedAvg()
    with caplog.at_level(logging.INFO):
        arrays, metrics = strategy.aggregate_train(
            1,
            [
                error_reply(4, "Traceback (most recent call last):\n  x\nValueError: bad"),
                reply(5, {"a": np.ones(2)}, 2),
            ],
        )
    assert arrays is not None
    assert metrics is not None
    assert "Received 1 results and 1 failures" in caplog.text
    assert "from node 4: ValueError: bad" in caplog.text
    assert strategy.aggregate_train(1, [error_reply(4, "x")]) == (None, None)
    assert strategy.aggregate_train(1, []) == (None, None)
    assert strategy.aggregate_evaluate(1, [error_reply(4, "x")]) is None


@pytest.mark.parametrize(
    ("replies", "match"),
    [
        ([reply(1, {"a": np.ones(2)}, 1), reply(2, None, 1)], "exactly one ArrayRecord"),
        ([reply(1, {"a": np.ones(2)}, 1), reply(2, {"b": np.ones(2)}, 1)], "same keys"),
        ([reply(1, {"a": np.ones(2)}, 1), reply(2, {"a": np.ones(2)}, 1, x=1)], "same keys"),
    ],
)
def test_inconsistent_replies_are_one_clear_error(replies: list[Message], match: str) -> None:
    with pytest.raises(InconsistentMessageReplies, match=match):
        FedAvg().aggregate_train(1, replies)


def test_missing_or_list_weight_is_a_clear_error() -> None:
    with pytest.raises(InconsistentMessageReplies, match="Missing required key `n`"):
        FedAvg(weighted_by_key="n").aggregate_train(1, [reply(1, {"a": np.ones(2)}, 1)])
    listed = reply(1, {"a": np.ones(2)}, 1)
    listed.content["metrics"]["num-examples"] = [1, 2]
    with pytest.raises(InconsistentMessageReplies, match="single value"):
        FedAvg().aggregate_train(1, [listed])


def test_zero_total_weight_is_a_clear_error() -> None:
    with pytest.raises(InconsistentMessageReplies, match="add up to 0"):
        FedAvg().aggregate_evaluate(1, [reply(1, None, 0, loss=1.0)])


def test_custom_metrics_aggregation_gets_contents_in_partition_order() -> None:
    calls: list[tuple[list[float], str]] = []

    def aggr(contents: list[RecordDict], key: str) -> MetricRecord:
        calls.append(([float(c["metrics"]["loss"]) for c in contents], key))
        return MetricRecord({"n": len(contents)})

    grid = InProcessGrid.with_apps(app, [3, 1, 2])
    strategy = FedAvg(evaluate_metrics_aggr_fn=aggr)
    list(strategy.configure_evaluate(1, ArrayRecord(), ConfigRecord(), grid))
    replies = [reply(node, None, 1, loss=float(node)) for node in (1, 2, 3)]
    assert strategy.aggregate_evaluate(1, replies) == MetricRecord({"n": 3})
    assert calls == [([3.0, 1.0, 2.0], "num-examples")]


def test_too_few_nodes_is_an_error_after_the_wait() -> None:
    grid = InProcessGrid.with_apps(app, [1])
    with pytest.raises(NotEnoughNodesError, match="only 1 of the 2 nodes"):
        utils.sample_nodes(grid, 2, 1, timeout=0.05)


def test_the_wait_takes_the_run_configs_timeout_and_names_the_fleet_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grid = InProcessGrid.with_apps(app, [1], run_config={"min-available-timeout": 0.05})
    grid.fleet_address = "10.0.0.5:9092"  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO), pytest.raises(NotEnoughNodesError, match=r"0\.05"):
        utils.sample_nodes(grid, 2, 1)
    assert "(start SuperNodes with --superlink 10.0.0.5:9092, the Fleet API)" in caplog.text


def test_a_bad_wait_timeout_in_the_run_config_is_one_clear_error() -> None:
    grid = InProcessGrid.with_apps(app, [1], run_config={"min-available-timeout": "soon"})
    with pytest.raises(ConfigError, match="'min-available-timeout' must be seconds >= 0"):
        utils.sample_nodes(grid, 2, 1)


def test_the_utilities_name_a_missing_weight_without_validation_first() -> None:
    no_metrics = RecordDict({"arrays": ArrayRecord({"a": np.ones(2)})})
    with pytest.raises(InconsistentMessageReplies, match="Missing required key `num-examples`"):
        utils.aggregate_arrayrecords([no_metrics], "num-examples")
    with pytest.raises(InconsistentMessageReplies, match="Missing required key `n`"):
        utils.aggregate_metricrecords([RecordDict({"m": MetricRecord({"x": 1})})], "n")
