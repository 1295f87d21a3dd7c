"""SecAgg+ end to end over an in-process Grid: the aggregate, dropouts, what the server sees.

Node i (partition i) fits to [i+1 ...] with weight i+1; the SecAgg+ aggregate must be the
weighted average of the nodes whose masked vector the server summed, within quantization
error, for every stage a node may drop out at, up to `num_shares - threshold` nodes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.client import ClientApp, NumPyClient
from stamen.client.mod import secagg_mod, secaggplus_mod
from stamen.common.context import Context
from stamen.common.legacy import ndarrays_to_parameters
from stamen.common.message import Message
from stamen.common.records import ConfigRecord, RecordDict
from stamen.common.secure_aggregation import crypto
from stamen.common.secure_aggregation.constants import (
    MASKED_RECORD,
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
    Stage,
)
from stamen.common.secure_aggregation.shamir import ShamirError, combine_shares, create_shares
from stamen.server import LegacyContext, ServerConfig
from stamen.server.strategy import FedAvg
from stamen.server.workflow import DefaultWorkflow, SecAggPlusWorkflow, SecAggWorkflow

SHAPES = [(3, 2), (4,)]
STEP = 16 / 2**22  # one quantization level: 2**22 levels over [-8, 8]
MAX_WEIGHT = 1000.0  # the default


def update(pid: int) -> list[np.ndarray]:
    return [np.full(s, 0.1 * (pid + 1) - 0.25, np.float32) for s in SHAPES]


class Fixed(NumPyClient):
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def fit(self, parameters: Any, config: Any) -> Any:
        return update(self.pid), self.pid + 1, {"pid": self.pid}


def dropping(drop: set[int], stage: str) -> Any:
    """A mod that makes the nodes in `drop` fail when asked for `stage`."""

    def mod(msg: Message, ctxt: Context, call_next: Any) -> Message:
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        if ctxt.node_id in drop and configs is not None and configs[Key.STAGE] == stage:
            raise RuntimeError(f"node {ctxt.node_id} drops out at {stage}")
        return call_next(msg, ctxt)

    return mod


def grid(nodes: int, drop: set[int] = frozenset(), stage: str = "", mod: Any = secaggplus_mod):  # type: ignore[assignment]
    app = ClientApp(
        client_fn=lambda context: Fixed(int(context.node_config["partition-id"])).to_client(),
        mods=[dropping(set(drop), stage), mod],
    )
    return InProcessGrid.with_apps(app, range(1, nodes + 1))


def legacy(nodes: int) -> LegacyContext:
    zeros = [np.zeros(s, np.float32) for s in SHAPES]
    strategy = FedAvg(
        initial_parameters=ndarrays_to_parameters(zeros),
        min_fit_clients=nodes,
        min_available_clients=nodes,
        fraction_evaluate=0.0,
    )
    context = Context(run_id=1, node_id=0, node_config={})
    return LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)


def run(workflow: Any, g: InProcessGrid, nodes: int) -> list[np.ndarray]:
    context = legacy(nodes)
    DefaultWorkflow(fit_workflow=workflow)(g, context)
    return context.state.array_records["parameters"].to_numpy_ndarrays()


def expected(pids: list[int]) -> list[np.ndarray]:
    weights = np.array([pid + 1 for pid in pids], np.float64)
    return [
        sum(w * u[i].astype(np.float64) for w, u in zip(weights, map(update, pids), strict=True))
        / weights.sum()
        for i in range(len(SHAPES))
    ]


def check(model: list[np.ndarray], pids: list[int]) -> None:
    """Within quantization error: a level per node, scaled by max_weight / total weight
    (the weights are quantized too, to ~1e-4 relative)."""
    atol = len(pids) * STEP * MAX_WEIGHT / sum(p + 1 for p in pids) + 1e-4
    for got, want in zip(model, expected(pids), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=atol, rtol=0)
        assert not np.allclose(got, 0.0)


def test_shamir_rebuilds_from_any_threshold_shares_and_not_from_fewer() -> None:
    secret = bytes(range(32))
    shares = create_shares(secret, 3, 5)
    assert combine_shares([shares[4], shares[0], shares[2]]) == secret
    assert combine_shares(shares) == secret
    with pytest.raises(ShamirError):
        combine_shares([shares[0], shares[0], shares[1]])
    # Two shares of a 3-threshold secret are a different (random-looking) value.
    with contextlib.suppress(ShamirError):
        assert combine_shares(shares[:2]) != secret


def test_a_mask_is_the_aes_ctr_keystream_across_chunk_boundaries() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    seed, size = bytes(range(32)), 3 * 2**16 + 7
    stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(4 * size))
    vector = np.arange(size, dtype=np.uint32)
    crypto.apply_mask(vector, seed)
    expected_sum = np.arange(size, dtype=np.uint32) + np.frombuffer(stream, "<u4")
    np.testing.assert_array_equal(vector, expected_sum)
    crypto.apply_mask(vector, seed, subtract=True)
    np.testing.assert_array_equal(vector, np.arange(size, dtype=np.uint32))


def test_no_dropout_gives_the_weighted_average() -> None:
    check(
        run(SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3), grid(7), 7),
        list(range(7)),
    )


def test_secagg_and_secagg_mod_give_the_weighted_average() -> None:
    check(
        run(SecAggWorkflow(reconstruction_threshold=3), grid(4, mod=secagg_mod), 4), list(range(4))
    )


@pytest.mark.parametrize("stage", Stage.all())
def test_tolerated_dropouts_at_each_stage(stage: str) -> None:
    # 7 nodes, neighbourhoods of 5, threshold 3: any 2 nodes may drop.
    drop = {2, 6}
    model = run(SecAggPlusWorkflow(5, 3), grid(7, drop, stage), 7)
    # Who dropped at unmask had uploaded its masked vector: it is in the sum.
    summed = range(7) if stage == Stage.UNMASK else [p for p in range(7) if p + 1 not in drop]
    check(model, list(summed))


@pytest.mark.parametrize("stage", Stage.all())
def test_too_many_dropouts_halt_the_round_and_keep_the_model(
    stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    model = run(SecAggPlusWorkflow(5, 3), grid(5, {1, 2, 3}, stage), 5)
    for array in model:
        np.testing.assert_array_equal(array, 0.0)
    assert "Secure aggregation halted in round 1" in caplog.text


class Recording(InProcessGrid):
    """Also keeps every reply the server received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[Message] = []

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        replies = super().send_and_receive(messages, timeout=timeout)
        self.received.extend(replies)
        return replies


def recording_grid(nodes: int) -> Recording:
    g = grid(nodes)
    return Recording(g.nodes.values())


def test_the_server_sees_masked_vectors_and_sealed_shares_only() -> None:
    g = recording_grid(4)
    check(run(SecAggPlusWorkflow(4, 3), g, 4), list(range(4)))
    masked = [
        r.content.array_records[MASKED_RECORD] for r in g.received if MASKED_RECORD in r.content
    ]
    assert len(masked) == 4
    for reply in g.received:
        assert not any(
            k.startswith("fitres.parameters") and len(v)
            for k, v in reply.content.array_records.items()
        )
    # A masked vector looks nothing like its quantized input (~2**21 for every entry).
    for record in masked:
        vector = next(iter(record.values())).numpy().astype(np.int64)
        quantized_mid = vector[1:] - 2**21
        assert np.abs(quantized_mid).max() > 2**24
    # A node's shares travel sealed: the stored shares do not appear in any ciphertext,
    # and a ciphertext does not open under the public keys' agreement a server can make.
    node = g.nodes[1]
    state = node.context.state.config_records[RECORD_KEY_STATE]
    ciphertexts = [
        c
        for r in g.received
        if r.metadata.src_node_id == 1 and RECORD_KEY_CONFIGS in r.content
        for c in r.content.config_records[RECORD_KEY_CONFIGS].get(Key.CIPHERTEXT_LIST, [])
    ]
    assert ciphertexts
    for share in state["seed_shares"] + state["sk1_shares"]:
        assert all(share[6:] not in c for c in ciphertexts)
    pk2s = state["neighbour_pk2s"]
    server_private, _ = crypto.generate_key_pair()
    wrong_key = crypto.agree(server_private, pk2s[0], crypto.SHARE_PURPOSE)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(wrong_key, ciphertexts[0], 1, 2)


class AskingForBoth(SecAggPlusWorkflow):
    """A malicious server: at unmask it asks for both shares of every neighbour."""

    refusals: list[str]

    def unmask_stage(self, grid: Any, context: Any, state: Any) -> None:
        self.refusals = []
        for nid in sorted(state.active):
            everyone = sorted(state.neighbours[nid] - {nid})
            record = ConfigRecord(
                {
                    Key.STAGE: Stage.UNMASK,
                    Key.ACTIVE_NODE_ID_LIST: [*everyone, nid],
                    Key.DEAD_NODE_ID_LIST: everyone,
                }
            )
            msg = grid.create_message(RecordDict({RECORD_KEY_CONFIGS: record}), "train", nid)
            (reply,) = grid.send_and_receive([msg])
            assert reply.has_error()
            self.refusals.append(reply.error.reason)


def test_a_client_refuses_to_reveal_both_shares_of_a_node() -> None:
    workflow = AskingForBoth(4, 3)
    run(workflow, grid(4), 4)
    assert len(workflow.refusals) == 4
    assert all("refused" in reason for reason in workflow.refusals)


def test_a_stage_out_of_order_is_refused() -> None:
    g = grid(3)
    record = ConfigRecord(
        {Key.STAGE: Stage.UNMASK, Key.ACTIVE_NODE_ID_LIST: [1], Key.DEAD_NODE_ID_LIST: []}
    )
    (reply,) = g.send_and_receive(
        [g.create_message(RecordDict({RECORD_KEY_CONFIGS: record}), "train", 1)]
    )
    assert "expect setup stage" in reply.error.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_shares": 2, "reconstruction_threshold": 2}, "greater than 2"),
        ({"num_shares": 5, "reconstruction_threshold": 5}, "less than `num_shares`"),
        ({"num_shares": 5, "reconstruction_threshold": 1.5}, "less than or equal to 1"),
        (
            {"num_shares": 5, "reconstruction_threshold": 3, "modulus_range": 3 * 2**22},
            "power of 2",
        ),
        ({"num_shares": 5, "reconstruction_threshold": 3, "modulus_range": 2**33}, "at most 2**32"),
        ({"num_shares": 5, "reconstruction_threshold": 3, "max_weight": 0}, "max_weight"),
        ({"num_shares": "5", "reconstruction_threshold": 3}, "int or float"),
    ],
)
def test_bad_parameters_get_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(
        (ValueError, TypeError), match=message.replace("*", r"\*").replace("(", r"\(")
    ):
        SecAggPlusWorkflow(**kwargs)
