"""secaggplus_mod: a node's side of SecAgg+ (Bell et al., CCS 2020), as Flower runs it.

Put it first in a ClientApp's mods; a `SecAggPlusWorkflow` drives it with four TRAIN
messages a round:

- setup: make two X25519 key pairs, reply with the public keys;
- share_keys: Shamir-share a fresh mask seed and private key 1 among the neighbours the
  server lists, each share encrypted to its neighbour (key 2 agreement, AES-GCM);
- collect_masked_vectors: keep the shares forwarded from the neighbours, run the app's
  fit (the next mods and the ClientApp), and reply with only its update quantized and
  masked (own seed + one pairwise mask per neighbour); the plain update never leaves;
- unmask: reveal the seed share of each surviving neighbour and the key share of each
  dropped one, never both for one node.

The protocol state lives in `context.state.config_records["secaggplus_state"]`.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from stamen.common.context import Context
from stamen.common.legacy import parameters_to_ndarrays, recorddict_to_fitres
from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, RecordDict
from stamen.common.secure_aggregation import crypto, quantization
from stamen.common.secure_aggregation.constants import (
    MASKED_RECORD,
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
    Stage,
)
from stamen.common.secure_aggregation.shamir import create_shares

__all__ = ["SecAggPlusProtocolError", "secaggplus_mod"]

logger = logging.getLogger(__name__)

ClientAppCallable = Callable[[Message, Context], Message]

SHAPES = "shapes"
NDIMS = "ndims"
DTYPES = "dtypes"


class SecAggPlusProtocolError(ValueError):
    """An instruction this node refuses: out of order, malformed, or one that would
    reveal more than the protocol allows."""


@dataclass
class _State:
    stage: str = Stage.UNMASK
    nid: int = 0
    share_num: int = 0
    threshold: int = 0
    clipping_range: float = 0.0
    target_range: int = 0
    mod_range: int = 0
    max_weight: float = 0.0
    sk1: bytes = b""
    pk1: bytes = b""
    sk2: bytes = b""
    pk2: bytes = b""
    rd_seed: bytes = b""
    neighbour_ids: list[int] = field(default_factory=list)
    neighbour_pk1s: list[bytes] = field(default_factory=list)
    neighbour_pk2s: list[bytes] = field(default_factory=list)
    share_owner_ids: list[int] = field(default_factory=list)
    seed_shares: list[bytes] = field(default_factory=list)
    sk1_shares: list[bytes] = field(default_factory=list)

    @classmethod
    def load(cls, record: ConfigRecord | None) -> _State:
        state = cls()
        for name, value in (record or {}).items():
            setattr(state, name, value)
        return state

    def save(self) -> ConfigRecord:
        return ConfigRecord({f.name: getattr(self, f.name) for f in fields(self)})


def secaggplus_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Run this node's part of the SecAgg+ stage the message asks for."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    state = _State.load(ctxt.state.config_records.get(RECORD_KEY_STATE))
    configs = dict(msg.content.config_records[RECORD_KEY_CONFIGS])
    stage = configs.pop(Key.STAGE, None)
    _check_stage(state.stage, stage)
    state.stage = str(stage)
    out = RecordDict()
    if stage == Stage.SETUP:
        res = _setup(state, configs, msg.metadata.dst_node_id)
    elif stage == Stage.SHARE_KEYS:
        res = _share_keys(state, configs)
    elif stage == Stage.COLLECT_MASKED_VECTORS:
        out, res = _collect_masked_vectors(state, configs, msg, ctxt, call_next)
    else:
        res = _unmask(state, configs)
    ctxt.state.config_records[RECORD_KEY_STATE] = state.save()
    out.config_records[RECORD_KEY_CONFIGS] = ConfigRecord(res)
    return Message(out, reply_to=msg)


def _check_stage(current: str, requested: Any) -> None:
    stages = Stage.all()
    if requested not in stages:
        raise SecAggPlusProtocolError(f"unknown SecAgg+ stage {requested!r}")
    if requested == Stage.SETUP:
        if current != Stage.UNMASK:
            logger.warning("Restart from the setup stage")
        return
    expected = stages[(stages.index(current) + 1) % len(stages)]
    if requested != expected:
        raise SecAggPlusProtocolError(
            f"Abort secure aggregation: expect {expected} stage, but receive {requested} stage"
        )


def _typed(configs: dict[str, Any], key: str, kind: type) -> Any:
    value = configs.get(key)
    if type(value) is not kind:  # bool is an int: compare exact types
        raise SecAggPlusProtocolError(f"SecAgg+ config {key!r} must be {kind.__name__}")
    return value


def _setup(state: _State, configs: dict[str, Any], nid: int) -> dict[str, Any]:
    fresh = _State(stage=Stage.SETUP, nid=nid)
    fresh.share_num = _typed(configs, Key.SHARE_NUMBER, int)
    fresh.threshold = _typed(configs, Key.THRESHOLD, int)
    fresh.clipping_range = _typed(configs, Key.CLIPPING_RANGE, float)
    fresh.target_range = _typed(configs, Key.TARGET_RANGE, int)
    fresh.mod_range = _typed(configs, Key.MOD_RANGE, int)
    fresh.max_weight = float(configs.get(Key.MAX_WEIGHT, 1000.0))
    if not 0 < fresh.mod_range <= 2**32 or fresh.mod_range & (fresh.mod_range - 1):
        raise SecAggPlusProtocolError("mod_range must be a power of 2 no larger than 2**32")
    fresh.sk1, fresh.pk1 = crypto.generate_key_pair()
    fresh.sk2, fresh.pk2 = crypto.generate_key_pair()
    vars(state).update(vars(fresh))
    return {Key.PUBLIC_KEY_1: state.pk1, Key.PUBLIC_KEY_2: state.pk2}


def _share_keys(state: _State, configs: dict[str, Any]) -> dict[str, Any]:
    keys: dict[int, tuple[bytes, bytes]] = {}
    for name, value in configs.items():
        if not (
            isinstance(value, list) and len(value) == 2 and all(type(v) is bytes for v in value)
        ):
            raise SecAggPlusProtocolError(f"public keys of node {name} must be two bytes")
        keys[int(name)] = (value[0], value[1])
    if len(keys) < state.threshold:
        raise SecAggPlusProtocolError("Available neighbours number smaller than threshold")
    every_key = [k for pair in keys.values() for k in pair]
    if len(set(every_key)) != len(every_key):
        raise SecAggPlusProtocolError("Some public keys are identical")
    if keys.get(state.nid) != (state.pk1, state.pk2):
        raise SecAggPlusProtocolError("the server listed this node's own public keys wrongly")
    state.neighbour_ids = list(keys)
    state.neighbour_pk1s = [pk1 for pk1, _ in keys.values()]
    state.neighbour_pk2s = [pk2 for _, pk2 in keys.values()]
    state.rd_seed = os.urandom(32)
    seed_shares = create_shares(state.rd_seed, state.threshold, len(keys))
    sk1_shares = create_shares(state.sk1, state.threshold, len(keys))
    dsts, ciphertexts = [], []
    state.share_owner_ids, state.seed_shares, state.sk1_shares = [], [], []
    for index, (nid, (_, pk2)) in enumerate(keys.items()):
        if nid == state.nid:
            _keep_shares(state, nid, seed_shares[index], sk1_shares[index])
            continue
        key = crypto.agree(state.sk2, pk2, crypto.SHARE_PURPOSE)
        plaintext = _pack(seed_shares[index], sk1_shares[index])
        dsts.append(nid)
        ciphertexts.append(crypto.encrypt(key, plaintext, state.nid, nid))
    return {Key.DESTINATION_LIST: dsts, Key.CIPHERTEXT_LIST: ciphertexts}


def _keep_shares(state: _State, owner: int, seed_share: bytes, sk1_share: bytes) -> None:
    state.share_owner_ids.append(owner)
    state.seed_shares.append(seed_share)
    state.sk1_shares.append(sk1_share)


def _pack(first: bytes, second: bytes) -> bytes:
    return struct.pack("<I", len(first)) + first + second


def _unpack(plaintext: bytes) -> tuple[bytes, bytes]:
    (length,) = struct.unpack_from("<I", plaintext)
    return plaintext[4 : 4 + length], plaintext[4 + length :]


def _collect_masked_vectors(
    state: _State,
    configs: dict[str, Any],
    msg: Message,
    ctxt: Context,
    call_next: ClientAppCallable,
) -> tuple[RecordDict, dict[str, Any]]:
    ciphertexts = configs.get(Key.CIPHERTEXT_LIST, [])
    srcs = configs.get(Key.SOURCE_LIST, [])
    if not isinstance(ciphertexts, list) or not isinstance(srcs, list):
        raise SecAggPlusProtocolError("ciphertexts and sources must be lists")
    if len(ciphertexts) != len(srcs):
        raise SecAggPlusProtocolError("ciphertexts and sources differ in length")
    if len(ciphertexts) + 1 < state.threshold:
        raise SecAggPlusProtocolError("Not enough available neighbour clients.")
    pk2_of = dict(zip(state.neighbour_ids, state.neighbour_pk2s, strict=True))
    for src, ciphertext in zip(srcs, ciphertexts, strict=True):
        if src not in pk2_of or src == state.nid or src in state.share_owner_ids:
            raise SecAggPlusProtocolError(f"unexpected shares from node {src}")
        key = crypto.agree(state.sk2, pk2_of[src], crypto.SHARE_PURPOSE)
        _keep_shares(state, src, *_unpack(crypto.decrypt(key, ciphertext, src, state.nid)))

    # The app (and the mods after this one) see the fit instructions, not the protocol.
    fit_only = RecordDict({k: v for k, v in msg.content.items() if k != RECORD_KEY_CONFIGS})
    reply = call_next(Message(fit_only, metadata=msg.metadata), ctxt)
    if reply.has_error():
        raise SecAggPlusProtocolError(f"the app's fit failed: {reply.error.reason}")
    out = reply.content
    fitres = recorddict_to_fitres(out)
    arrays = parameters_to_ndarrays(fitres.parameters)
    vector = quantization.quantize_update(
        arrays,
        fitres.num_examples,
        max_weight=state.max_weight,
        clipping_range=state.clipping_range,
        target_range=state.target_range,
    )
    crypto.apply_mask(vector, state.rd_seed)
    pk1_of = dict(zip(state.neighbour_ids, state.neighbour_pk1s, strict=True))
    for src in srcs:  # the neighbours that sent shares are the ones the server can unmask
        seed = crypto.agree(state.sk1, pk1_of[src], crypto.MASK_PURPOSE)
        crypto.apply_mask(vector, seed, subtract=state.nid < src)
    quantization.reduce(vector, state.mod_range)
    for record in out.array_records.values():
        record.clear()
    out.array_records[MASKED_RECORD] = ArrayRecord([vector])
    return out, {
        SHAPES: [d for a in arrays for d in a.shape],
        NDIMS: [a.ndim for a in arrays],
        DTYPES: [a.dtype.str for a in arrays],
    }


def _unmask(state: _State, configs: dict[str, Any]) -> dict[str, Any]:
    active = configs.get(Key.ACTIVE_NODE_ID_LIST)
    dead = configs.get(Key.DEAD_NODE_ID_LIST)
    if not isinstance(active, list) or not isinstance(dead, list):
        raise SecAggPlusProtocolError("active and dead node id lists are required")
    if set(active) & set(dead):
        raise SecAggPlusProtocolError(
            "refused: the server asks for both the mask-seed share and the key share of "
            f"nodes {sorted(set(active) & set(dead))}, which would reveal their update"
        )
    if state.nid in dead:
        raise SecAggPlusProtocolError("refused: the server lists this live node as dropped")
    if len(active) < state.threshold:
        raise SecAggPlusProtocolError("Available neighbours number smaller than threshold")
    index = {nid: i for i, nid in enumerate(state.share_owner_ids)}
    unknown = [nid for nid in active + dead if nid not in index]
    if unknown:
        raise SecAggPlusProtocolError(f"this node holds no shares of nodes {unknown}")
    shares = [state.seed_shares[index[nid]] for nid in active]
    shares += [state.sk1_shares[index[nid]] for nid in dead]
    return {Key.NODE_ID_LIST: active + dead, Key.SHARE_LIST: shares}
