"""Differential privacy: clipping norms exactly, seeded noise statistically, wrappers and mods."""

from __future__ import annotations

import math

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.app import Context
from stamen.client import ClientApp
from stamen.client.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod
from stamen.common.errors import AggregationError
from stamen.common.legacy import (
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server import ClientProxy
from stamen.server import strategy as legacy
from stamen.server.strategy.dp import (
    add_gaussian_noise,
    clip_update,
    compute_adaptive_noise_params,
    l2_norm,
)
from stamen.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)

SIZE = 200_000


def test_clip_update_scales_the_update_to_the_norm_and_keeps_dtypes() -> None:
    rng = np.random.default_rng(0)
    base = [rng.standard_normal((30, 20)).astype(np.float32), rng.standard_normal(7)]
    update = [rng.standard_normal(a.shape).astype(a.dtype) for a in base]
    reply = [b + u for b, u in zip(base, update, strict=True)]
    norm = l2_norm(update)
    clipped, was_clipped = clip_update(reply, base, norm / 4)
    assert was_clipped
    assert [a.dtype for a in clipped] == [np.float32, np.float64]
    assert l2_norm(clipped, base) == pytest.approx(norm / 4, rel=1e-5)
    same, was_clipped = clip_update(reply, base, norm * 2)
    assert not was_clipped
    for a, b in zip(same, reply, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_is_seeded_centred_with_the_requested_stddev(dtype) -> None:
    noisy = add_gaussian_noise([np.zeros(SIZE, dtype)], 0.5, np.random.default_rng(7))[0]
    assert noisy.dtype == dtype
    assert abs(noisy.mean()) < 5 * 0.5 / math.sqrt(SIZE)
    assert noisy.std() == pytest.approx(0.5, rel=0.01)
    again = add_gaussian_noise([np.zeros(SIZE, dtype)], 0.5, np.random.default_rng(7))[0]
    np.testing.assert_array_equal(noisy, again)


def test_noise_leaves_read_only_arrays_alone() -> None:
    frozen = np.zeros(10)
    frozen.flags.writeable = False
    (out,) = add_gaussian_noise([frozen], 1.0, np.random.default_rng(0))
    assert not np.any(frozen)
    assert np.all(out != 0)


def test_adaptive_noise_params_follow_andrew_et_al() -> None:
    stddev, z = compute_adaptive_noise_params(1.0, 100, None)
    assert stddev == 5.0
    assert z == pytest.approx((1.0 - (2 * 5.0) ** -2) ** -0.5)
    assert compute_adaptive_noise_params(0.0, 100, None) == (0.0, 0.0)
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        compute_adaptive_noise_params(1.0, 10, None)


def reply(node: int, arrays: dict[str, np.ndarray], **metrics: float) -> Message:
    sent = Message(RecordDict(), node, MessageType.TRAIN)
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 1, **metrics})}
    )
    return Message(content, reply_to=sent)


def test_server_side_fixed_clipping_clips_averages_and_adds_calibrated_noise() -> None:
    current = ArrayRecord({"w": np.zeros(SIZE, np.float32)})
    updates = [np.full(SIZE, v, np.float32) for v in (1.0, -3.0)]
    clip = 2.0 * math.sqrt(SIZE) * 0.1  # both updates have a larger norm
    for z, seed in [(0.0, None), (1.5, 3)]:
        dp = DifferentialPrivacyServerSideFixedClipping(FedAvg(), z, clip, 2, seed=seed)
        dp.current_arrays = current
        replies = [reply(i + 1, {"w": u}) for i, u in enumerate(updates)]
        arrays, _ = dp.aggregate_train(1, replies)
        assert arrays is not None
        w = arrays["w"].numpy()
        # Each update clipped to norm `clip`: every element +-0.2, averaged to 0.
        residual = w.astype(np.float64) - 0.0
        if z == 0.0:
            np.testing.assert_allclose(w, 0.0, atol=1e-6)
        else:
            std = z * clip / 2
            assert abs(residual.mean()) < 5 * std / math.sqrt(SIZE)
            assert residual.std() == pytest.approx(std, rel=0.01)


def test_a_failed_reply_skips_the_dp_round() -> None:
    dp = DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 1.0, 2)
    sent = Message(RecordDict(), 5, MessageType.TRAIN)
    failed = Message(error=Error(ErrorCode.CLIENT_APP_RAISED, "x"), reply_to=sent)
    assert dp.aggregate_train(1, [reply(1, {"w": np.ones(2)}), failed]) == (None, None)


def test_wrappers_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match="noise multiplier"):
        DifferentialPrivacyClientSideFixedClipping(FedAvg(), -1.0, 1.0, 2)
    with pytest.raises(ValueError, match="clipping norm"):
        DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 0.0, 2)
    with pytest.raises(ValueError, match="sampled clients"):
        DifferentialPrivacyServerSideAdaptiveClipping(FedAvg(), 0.1, 0)
    with pytest.raises(ValueError, match="quantile"):
        DifferentialPrivacyClientSideAdaptiveClipping(FedAvg(), 0.1, 2, target_clipped_quantile=2)


def test_server_side_adaptive_clipping_moves_the_norm_towards_the_quantile() -> None:
    dp = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(), 0.0, 2, initial_clipping_norm=0.1, clip_norm_lr=0.2, seed=0
    )
    dp.current_arrays = ArrayRecord({"w": np.zeros(4)})
    replies = [reply(i, {"w": np.full(4, 5.0)}) for i in (1, 2)]
    arrays, _ = dp.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_allclose(arrays["w"].numpy(), 0.05)  # clipped to norm 0.1
    assert dp.clipping_norm == pytest.approx(0.1 * math.exp(-0.2 * (1.0 - 0.5)))


def test_client_side_adaptive_clipping_needs_norm_bits() -> None:
    dp = DifferentialPrivacyClientSideAdaptiveClipping(FedAvg(), 0.0, 2, seed=0)
    with pytest.raises(AggregationError, match="norm_bit"):
        dp.aggregate_train(1, [reply(1, {"w": np.ones(2)}), reply(2, {"w": np.ones(2)})])
    replies = [reply(i, {"w": np.ones(2)}, norm_bit=0) for i in (1, 2)]
    dp.aggregate_train(1, replies)
    assert dp.clipping_norm == pytest.approx(0.1 * math.exp(-0.2 * (0.0 - 0.5)))


client = ClientApp(mods=[adaptiveclipping_mod])


@client.train()
def train(message: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    arrays = ArrayRecord({k: a.numpy() + 10.0 * pid for k, a in message.content["arrays"].items()})
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@client.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=message)


def test_client_side_adaptive_clipping_with_the_mod_runs_rounds() -> None:
    grid = InProcessGrid.with_apps(client, [11, 12])
    dp = DifferentialPrivacyClientSideAdaptiveClipping(
        FedAvg(), 0.0, 2, initial_clipping_norm=1.0, seed=1
    )
    result = dp.start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=2)
    # Partition 0 does not move, partition 1 moves by norm 20 clipped to the norm.
    w = result.arrays["w"].numpy()
    assert np.all(w > 0)
    assert np.all(w < 1.0)
    assert dp.clipping_norm == pytest.approx(math.exp(-0.2 * (0.5 - 0.5) * 2))


def call(mod, message: Message, produce) -> Message:
    return mod(message, Context(1, 1, {}, {}, {}), lambda m, c: produce(m))


def instruction(config: dict, message_type: str = MessageType.TRAIN) -> Message:
    content = RecordDict(
        {"arrays": ArrayRecord({"w": np.zeros(100)}), "config": ConfigRecord(config)}
    )
    return Message(content, 1, message_type)


def trained(message: Message) -> Message:
    content = RecordDict(
        {"arrays": ArrayRecord({"w": np.full(100, 3.0)}), "m": MetricRecord({"n": 1})}
    )
    return Message(content, reply_to=message)


def test_fixedclipping_mod_clips_to_the_sent_norm() -> None:
    out = call(fixedclipping_mod, instruction({"clipping_norm": 2.0}), trained)
    assert np.linalg.norm(out.content["arrays"]["w"].numpy()) == pytest.approx(2.0)
    out = call(adaptiveclipping_mod, instruction({"clipping_norm": 100.0}), trained)
    assert out.content["m"]["norm_bit"] == 0
    np.testing.assert_array_equal(out.content["arrays"]["w"].numpy(), 3.0)


def test_clipping_mods_refuse_without_a_norm_and_pass_evaluation_through() -> None:
    out = call(fixedclipping_mod, instruction({}), trained)
    assert out.has_error()
    assert "clipping_norm" in out.error.reason
    out = call(fixedclipping_mod, instruction({}, MessageType.EVALUATE), trained)
    assert not out.has_error()


def test_local_dp_mod_clips_then_adds_gaussian_noise() -> None:
    mod = LocalDpMod(clipping_norm=1.0, sensitivity=0.1, epsilon=1.0, delta=1e-5, seed=4)
    big = lambda m: Message(  # noqa: E731
        RecordDict({"arrays": ArrayRecord({"w": np.full(SIZE, 3.0)})}), reply_to=m
    )
    msg = Message(RecordDict({"arrays": ArrayRecord({"w": np.zeros(SIZE)})}), 1, MessageType.TRAIN)
    w = call(mod, msg, big).content["arrays"]["w"].numpy()
    std = 0.1 * math.sqrt(2 * math.log(1.25 / 1e-5))
    assert (w - 1 / math.sqrt(SIZE)).std() == pytest.approx(std, rel=0.01)
    assert abs((w - 1 / math.sqrt(SIZE)).mean()) < 5 * std / math.sqrt(SIZE)
    with pytest.raises(ValueError, match="clipping norm"):
        LocalDpMod(0.0, 1.0, 1.0, 1e-5)


def legacy_results(values: list[float], size: int = 4) -> list:
    grid = InProcessGrid([])
    return [
        (
            ClientProxy(10 + i, {"partition-id": i}, grid),
            FitRes(Status(), ndarrays_to_parameters([np.full(size, v)]), 1, {}),
        )
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize(
    "wrapper",
    [
        legacy.DifferentialPrivacyServerSideFixedClipping(legacy.FedAvg(), 1.0, 1.0, 2),
        legacy.DifferentialPrivacyClientSideFixedClipping(legacy.FedAvg(), 1.0, 1.0, 2),
        legacy.DifferentialPrivacyServerSideAdaptiveClipping(legacy.FedAvg(), 0.0, 2),
        legacy.DifferentialPrivacyClientSideAdaptiveClipping(legacy.FedAvg(), 0.0, 2),
        legacy.DPFedAvgFixed(legacy.FedAvg(), 2, 1.0),
        legacy.DPFedAvgAdaptive(legacy.FedAvg(), 2, noise_multiplier=0.0),
    ],
    ids=type,
)
def test_legacy_dp_wrappers_skip_rounds_with_failures(wrapper) -> None:
    assert wrapper.aggregate_fit(1, legacy_results([1.0, 2.0]), [RuntimeError()]) == (None, {})


def test_legacy_server_side_fixed_clipping_noise_has_z_c_over_m_stddev() -> None:
    wrapper = legacy.DifferentialPrivacyServerSideFixedClipping(
        legacy.FedAvg(), 2.0, 0.5, 2, seed=5
    )
    wrapper.current_round_params = [np.zeros(SIZE)]
    params, _ = wrapper.aggregate_fit(1, legacy_results([3.0, -3.0], SIZE), [])
    (w,) = parameters_to_ndarrays(params)
    assert w.std() == pytest.approx(2.0 * 0.5 / 2, rel=0.01)
    assert abs(w.mean()) < 5 * 0.5 / math.sqrt(SIZE)


def test_legacy_wrappers_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match="clipping threshold"):
        legacy.DPFedAvgFixed(legacy.FedAvg(), 2, 0.0)
    with pytest.raises(ValueError, match="clipping norm"):
        legacy.DifferentialPrivacyClientSideFixedClipping(legacy.FedAvg(), 1.0, -1.0, 2)
    with pytest.raises(ValueError, match="quantile"):
        legacy.DifferentialPrivacyServerSideAdaptiveClipping(
            legacy.FedAvg(), 0.0, 2, target_clipped_quantile=-0.1
        )


def test_legacy_client_side_adaptive_needs_norm_bits() -> None:
    wrapper = legacy.DifferentialPrivacyClientSideAdaptiveClipping(legacy.FedAvg(), 0.0, 2)
    with pytest.raises(AggregationError, match="norm_bit not returned by client"):
        wrapper.aggregate_fit(1, legacy_results([1.0, 2.0]), [])
