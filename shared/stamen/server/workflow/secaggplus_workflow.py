"""SecAggPlusWorkflow: a fit round in which the server learns only the weighted sum.

    DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3))

with `secaggplus_mod` first in the ClientApp's mods. Four stages, one TRAIN message to
each live node per stage (setup, share_keys, collect_masked_vectors, unmask; see
`stamen.clientapp.mod.secaggplus_mod`). Each node uploads [w, w * params] quantized and
masked; the server sums the masked vectors and removes the masks with the shares the
survivors reveal: seeds of the nodes that uploaded, private keys of the ones that
dropped after sharing their keys. Only that sum, as the weighted average, reaches the
strategy's `aggregate_fit`, once per surviving node's FitRes.

A round survives `num_shares - reconstruction_threshold` dropouts in each neighbourhood
at each stage; beyond that it halts with an ERROR line and leaves the model unchanged
(never a wrong aggregate), as Flower's does.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from stamen.common.context import Context
from stamen.common.legacy import (
    FitRes,
    Parameters,
    arrayrecord_to_parameters,
    fitins_to_recorddict,
    ndarrays_to_parameters,
    parameters_to_arrayrecord,
    recorddict_to_fitres,
)
from stamen.common.message import MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, RecordDict
from stamen.common.secure_aggregation import crypto, quantization
from stamen.common.secure_aggregation.constants import (
    MASKED_RECORD,
    RECORD_KEY_CONFIGS,
    Key,
    Stage,
)
from stamen.common.secure_aggregation.shamir import ShamirError, combine_shares

from ..client_proxy import ClientProxy
from ..grid import Grid
from ..legacy_context import LegacyContext
from ..loop import CONFIG_KEY, CURRENT_ROUND, PARAMETERS_KEY

__all__ = ["SecAggPlusWorkflow"]

logger = logging.getLogger(__name__)

_SHAPES, _NDIMS, _DTYPES = "shapes", "ndims", "dtypes"


class SecAggHalted(Exception):
    """A round that cannot finish securely; the message says which stage and why."""


@dataclass
class _Round:
    """What the server keeps during one round (public keys, routing, the masked sum)."""

    server_round: int = 0
    num_shares: int = 0
    threshold: int = 0
    sampled: set[int] = field(default_factory=set)
    active: set[int] = field(default_factory=set)
    keyed: set[int] = field(default_factory=set)
    neighbours: dict[int, set[int]] = field(default_factory=dict)
    public_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    proxies: dict[int, ClientProxy] = field(default_factory=dict)
    fitins: dict[int, RecordDict] = field(default_factory=dict)
    forward: dict[int, tuple[list[int], list[bytes]]] = field(default_factory=dict)
    masked_sum: npt.NDArray[np.uint32] | None = None
    layout: tuple[list[tuple[int, ...]], list[np.dtype[Any]]] | None = None
    results: list[tuple[ClientProxy, FitRes]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)


class SecAggPlusWorkflow:
    """The SecAgg+ fit workflow, with Flower's parameters.

    `num_shares`: shares of each node's secrets, one per neighbour (itself included); a
    float is a fraction of the sampled nodes. `reconstruction_threshold`: shares needed
    to rebuild a secret; a float is a fraction of `num_shares`. `max_weight`: the largest
    `num_examples` a node may report; `clipping_range`: parameters are clipped to
    [-clipping_range, clipping_range]; `quantization_range`: they map onto that many
    integer levels; `modulus_range`: a power of 2 (at most 2**32) the masks live in;
    `timeout`: seconds to wait for each stage's replies (None: until every node answers
    or is known gone).
    """

    def __init__(
        self,
        num_shares: int | float,
        reconstruction_threshold: int | float,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 4194304,
        modulus_range: int = 4294967296,
        timeout: float | None = None,
    ) -> None:
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.max_weight = max_weight
        self.clipping_range = clipping_range
        self.quantization_range = quantization_range
        self.modulus_range = modulus_range
        self.timeout = timeout
        self._check_init_params()

    def _check_init_params(self) -> None:
        if isinstance(self.num_shares, bool) or not isinstance(self.num_shares, int | float):
            raise TypeError("`num_shares` must be of type int or float.")
        if isinstance(self.num_shares, int):
            if self.num_shares == 1:
                self.num_shares = 1.0
            elif self.num_shares <= 2:
                raise ValueError("`num_shares` as an integer must be greater than 2.")
            elif self.num_shares > self.modulus_range / self.quantization_range:
                logger.warning(
                    "A `num_shares` larger than `modulus_range / quantization_range` will "
                    "potentially cause overflow when computing the aggregated model "
                    "parameters."
                )
        elif self.num_shares <= 0:
            raise ValueError("`num_shares` as a float must be greater than 0.")
        threshold = self.reconstruction_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise TypeError("`reconstruction_threshold` must be of type int or float.")
        if isinstance(threshold, int):
            if threshold == 1:
                self.reconstruction_threshold = 1.0
            elif isinstance(self.num_shares, int) and threshold >= self.num_shares:
                raise ValueError("`reconstruction_threshold` must be less than `num_shares`.")
        elif not 0 < threshold <= 1:
            raise ValueError(
                "If `reconstruction_threshold` is a float, it must be greater than 0 and "
                "less than or equal to 1."
            )
        if not self.max_weight > 0:
            raise ValueError("`max_weight` must be greater than 0.")
        if not self.clipping_range > 0:
            raise ValueError("`clipping_range` must be greater than 0.")
        if not isinstance(self.quantization_range, int) or self.quantization_range <= 0:
            raise ValueError("`quantization_range` must be an integer and greater than 0.")
        modulus = self.modulus_range
        if not isinstance(modulus, int) or modulus <= self.quantization_range:
            raise ValueError(
                "`modulus_range` must be an integer and greater than `quantization_range`."
            )
        if bin(modulus).count("1") != 1:
            raise ValueError("`modulus_range` must be a power of 2.")
        if modulus > 2**32:
            raise ValueError("`modulus_range` must be at most 2**32.")

    def __call__(self, grid: Grid, context: Context) -> None:
        if not isinstance(context, LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        state = _Round()
        logger.info("Secure aggregation commencing.")
        try:
            if not self.setup_stage(grid, context, state):
                return
            self.share_keys_stage(grid, context, state)
            self.collect_masked_vectors_stage(grid, context, state)
            self.unmask_stage(grid, context, state)
        except SecAggHalted as exc:
            logger.error("Secure aggregation halted in round %d: %s", state.server_round, exc)
            return
        logger.info("Secure aggregation completed.")

    # -- stages ---------------------------------------------------------------------

    def setup_stage(self, grid: Grid, context: LegacyContext, state: _Round) -> bool:
        """Sample the nodes, fix the neighbourhoods, collect every node's public keys."""
        state.server_round = int(context.state.config_records[CONFIG_KEY][CURRENT_ROUND])  # type: ignore[arg-type]
        parameters = arrayrecord_to_parameters(context.state.array_records[PARAMETERS_KEY])
        context.client_manager.refresh()
        instructions = context.strategy.configure_fit(
            server_round=state.server_round,
            parameters=parameters,
            client_manager=context.client_manager,
        )
        if not instructions:
            logger.info("configure_fit: no clients selected, cancel")
            return False
        logger.info(
            "configure_fit: strategy sampled %d clients (out of %d)",
            len(instructions),
            context.client_manager.num_available(),
        )
        encoded: dict[int, Any] = {}
        for proxy, ins in instructions:
            record = encoded.get(id(ins.parameters))
            if record is None:
                record = encoded[id(ins.parameters)] = parameters_to_arrayrecord(ins.parameters)
            content = fitins_to_recorddict(replace(ins, parameters=Parameters(tensors=[])))
            content["fitins.parameters"] = record
            state.fitins[proxy.node_id] = content
            state.proxies[proxy.node_id] = proxy
        sampled = list(state.fitins)
        if len(sampled) < 2:
            raise SecAggHalted("The number of samples should be greater than 1.")
        state.num_shares, state.threshold = self._share_counts(len(sampled))
        random.shuffle(sampled)
        half = state.num_shares >> 1
        state.neighbours = {
            nid: {sampled[(i + offset) % len(sampled)] for offset in range(-half, half + 1)}
            for i, nid in enumerate(sampled)
        }
        state.sampled, state.active = set(sampled), set(sampled)
        config = ConfigRecord(
            {
                Key.STAGE: Stage.SETUP,
                Key.SAMPLE_NUMBER: len(sampled),
                Key.SHARE_NUMBER: state.num_shares,
                Key.THRESHOLD: state.threshold,
                Key.CLIPPING_RANGE: float(self.clipping_range),
                Key.TARGET_RANGE: self.quantization_range,
                Key.MOD_RANGE: self.modulus_range,
                Key.MAX_WEIGHT: float(self.max_weight),
            }
        )
        logger.debug("[Stage 0] Sending configurations to %d clients.", len(state.active))
        replies = self._exchange(
            grid, state, {nid: RecordDict({RECORD_KEY_CONFIGS: config}) for nid in sampled}
        )
        for nid, reply in replies.items():
            res = reply.config_records[RECORD_KEY_CONFIGS]
            pk1, pk2 = res.get(Key.PUBLIC_KEY_1), res.get(Key.PUBLIC_KEY_2)
            if not isinstance(pk1, bytes) or not isinstance(pk2, bytes):
                state.failures.append(ValueError(f"node {nid}: no public keys in its reply"))
                state.active.discard(nid)
                continue
            state.public_keys[nid] = (pk1, pk2)
        logger.debug("[Stage 0] Received public keys from %d clients.", len(state.active))
        self._check_threshold(state, Stage.SETUP)
        return True

    def share_keys_stage(self, grid: Grid, context: LegacyContext, state: _Round) -> None:
        """Send each node its live neighbours' public keys; route the encrypted shares."""
        contents = {}
        for nid in state.active:
            record = ConfigRecord(
                {
                    str(other): list(state.public_keys[other])
                    for other in state.neighbours[nid] & state.active
                }
            )
            record[Key.STAGE] = Stage.SHARE_KEYS
            contents[nid] = RecordDict({RECORD_KEY_CONFIGS: record})
        logger.debug("[Stage 1] Forwarding public keys to %d clients.", len(state.active))
        replies = self._exchange(grid, state, contents)
        state.keyed = set(state.active)
        state.forward = {nid: ([], []) for nid in state.active}
        for src, reply in replies.items():
            res = reply.config_records[RECORD_KEY_CONFIGS]
            for dst, ciphertext in _pairs(res, Key.DESTINATION_LIST, Key.CIPHERTEXT_LIST):
                if dst in state.forward and dst in state.neighbours[src]:
                    state.forward[dst][0].append(src)
                    state.forward[dst][1].append(ciphertext)
        logger.debug("[Stage 1] Received encrypted key shares from %d clients.", len(replies))
        self._check_threshold(state, Stage.SHARE_KEYS)

    def collect_masked_vectors_stage(
        self, grid: Grid, context: LegacyContext, state: _Round
    ) -> None:
        """Forward the shares with the fit instructions; sum the masked vectors."""
        contents = {}
        for nid in state.active:
            content = RecordDict(dict(state.fitins[nid]))
            srcs, ciphertexts = state.forward[nid]
            content.config_records[RECORD_KEY_CONFIGS] = ConfigRecord(
                {
                    Key.STAGE: Stage.COLLECT_MASKED_VECTORS,
                    Key.SOURCE_LIST: srcs,
                    Key.CIPHERTEXT_LIST: ciphertexts,
                }
            )
            contents[nid] = content
        logger.debug("[Stage 2] Forwarding encrypted key shares to %d clients.", len(contents))
        replies = self._exchange(grid, state, contents)
        state.fitins.clear()
        state.forward.clear()
        for nid, reply in replies.items():
            try:
                vector, layout = _masked_vector(reply)
                if state.layout is not None and layout != state.layout:
                    raise ValueError("its update's shapes differ from the other nodes'")
            except (KeyError, ValueError, TypeError) as exc:
                state.failures.append(ValueError(f"node {nid}: masked vector unusable: {exc}"))
                state.active.discard(nid)
                continue
            state.layout = layout
            if state.masked_sum is None:
                state.masked_sum = vector.copy()
            else:
                state.masked_sum += vector
            fitres = recorddict_to_fitres(reply)
            state.results.append((state.proxies[nid], fitres))
        logger.debug("[Stage 2] Received masked vectors from %d clients.", len(state.active))
        self._check_threshold(state, Stage.COLLECT_MASKED_VECTORS)

    def unmask_stage(self, grid: Grid, context: LegacyContext, state: _Round) -> None:
        """Collect the shares that remove the masks; hand the average to the strategy."""
        masked, dropped = state.active, state.keyed - state.active
        contents = {
            nid: RecordDict(
                {
                    RECORD_KEY_CONFIGS: ConfigRecord(
                        {
                            Key.STAGE: Stage.UNMASK,
                            Key.ACTIVE_NODE_ID_LIST: sorted(state.neighbours[nid] & masked),
                            Key.DEAD_NODE_ID_LIST: sorted(state.neighbours[nid] & dropped),
                        }
                    )
                }
            )
            for nid in masked
        }
        logger.debug("[Stage 3] Requesting key shares from %d clients.", len(contents))
        replies = self._exchange(grid, state, contents)
        shares: dict[int, list[bytes]] = {nid: [] for nid in masked | dropped}
        for reply in replies.values():
            res = reply.config_records[RECORD_KEY_CONFIGS]
            for owner, share in _pairs(res, Key.NODE_ID_LIST, Key.SHARE_LIST):
                if owner in shares:
                    shares[owner].append(share)
        logger.debug("[Stage 3] Received key shares from %d clients.", len(replies))
        total = state.masked_sum
        if total is None or state.layout is None:
            raise SecAggHalted("no masked vector to unmask")
        for nid, owned in shares.items():
            if len(owned) < state.threshold:
                raise SecAggHalted(
                    f"Not enough shares to recover secret in unmask vectors stage: node "
                    f"{nid} has {len(owned)} of the {state.threshold} needed"
                )
            try:
                secret = combine_shares(owned[: state.threshold])
            except ShamirError as exc:
                raise SecAggHalted(f"the shares of node {nid} do not combine: {exc}") from None
            if nid in masked:
                crypto.apply_mask(total, secret, subtract=True)
                continue
            for other in state.neighbours[nid] & masked:
                seed = crypto.agree(secret, state.public_keys[other][0], crypto.MASK_PURPOSE)
                # `other` added the mask if other > nid, else subtracted it: undo that.
                crypto.apply_mask(total, seed, subtract=other > nid)
        quantization.reduce(total, self.modulus_range)
        shapes, dtypes = state.layout
        average = quantization.dequantize_sum(
            total,
            shapes,
            dtypes,
            num_summed=len(masked),
            clipping_range=self.clipping_range,
            target_range=self.quantization_range,
        )
        self._aggregate(context, state, ndarrays_to_parameters(average))

    # -- helpers --------------------------------------------------------------------

    def _share_counts(self, num_samples: int) -> tuple[int, int]:
        if isinstance(self.num_shares, float):
            num_shares = round(self.num_shares * num_samples)
            if num_shares < num_samples and num_shares & 1 == 0:
                num_shares += 1
            if num_shares <= 2:
                num_shares = num_samples
        else:
            num_shares = self.num_shares
        if num_shares != num_samples and num_shares & 1 == 0:
            logger.warning("Number of shares in the SecAgg+ protocol should be odd.")
            num_shares += 1
        num_shares = min(num_shares, num_samples)
        if isinstance(self.reconstruction_threshold, float):
            threshold = max(round(self.reconstruction_threshold * num_shares), 2)
        else:
            threshold = self.reconstruction_threshold
        if threshold > num_shares:
            raise SecAggHalted(
                f"reconstruction_threshold {threshold} exceeds the {num_shares} shares "
                f"that {num_samples} sampled nodes allow"
            )
        return num_shares, threshold

    def _exchange(
        self, grid: Grid, state: _Round, contents: dict[int, RecordDict]
    ) -> dict[int, RecordDict]:
        """One stage's messages out; the good replies by node. A node that fails drops out."""
        messages = {
            nid: grid.create_message(
                content, MessageType.TRAIN, nid, group_id=str(state.server_round)
            )
            for nid, content in contents.items()
        }
        by_id = {m.metadata.message_id: nid for nid, m in messages.items()}
        replies: dict[int, RecordDict] = {}
        for reply in grid.send_and_receive(messages.values(), timeout=self.timeout):
            nid = by_id.get(reply.metadata.reply_to_message_id)
            if nid is None:
                continue
            if reply.has_error():
                state.failures.append(RuntimeError(f"node {nid}: {reply.error.reason}"))
            elif RECORD_KEY_CONFIGS not in reply.content.config_records:
                state.failures.append(ValueError(f"node {nid}: reply without SecAgg+ configs"))
            else:
                replies[nid] = reply.content
        state.active = state.active & set(replies)
        return replies

    def _check_threshold(self, state: _Round, stage: str) -> None:
        for nid in state.sampled:
            live = state.neighbours[nid] & state.active
            if len(live) < state.threshold:
                raise SecAggHalted(
                    f"Insufficient available nodes after the {stage} stage: node {nid} has "
                    f"{len(live)} live neighbours, the reconstruction threshold is "
                    f"{state.threshold}"
                )

    def _aggregate(self, context: LegacyContext, state: _Round, average: Parameters) -> None:
        results = [(proxy, replace(res, parameters=average)) for proxy, res in state.results]
        logger.info(
            "aggregate_fit: received %d results and %d failures",
            len(results),
            len(state.failures),
        )
        aggregated, metrics = context.strategy.aggregate_fit(
            state.server_round,
            results,
            state.failures,  # type: ignore[arg-type]
        )
        if aggregated is not None:
            context.state.array_records[PARAMETERS_KEY] = parameters_to_arrayrecord(aggregated)
            context.history.add_metrics_distributed_fit(state.server_round, metrics)


def _pairs(record: ConfigRecord, ids_key: str, blobs_key: str) -> list[tuple[int, bytes]]:
    """The (node id, bytes) pairs a reply lists under two keys; none if malformed."""
    ids, blobs = record.get(ids_key), record.get(blobs_key)
    if not isinstance(ids, list) or not isinstance(blobs, list) or len(ids) != len(blobs):
        return []
    return [(i, b) for i, b in zip(ids, blobs, strict=True) if type(i) is int and type(b) is bytes]


def _masked_vector(
    reply: RecordDict,
) -> tuple[npt.NDArray[np.uint32], tuple[list[tuple[int, ...]], list[np.dtype[Any]]]]:
    record = reply.array_records[MASKED_RECORD]
    if not isinstance(record, ArrayRecord) or len(record) != 1:
        raise ValueError("one masked array expected")
    vector = np.asarray(next(iter(record.values())).numpy(), dtype=np.uint32)
    res = reply.config_records[RECORD_KEY_CONFIGS]
    dims, ndims, dtypes = res[_SHAPES], res[_NDIMS], res[_DTYPES]
    shapes, offset = [], 0
    for ndim in ndims:  # type: ignore[union-attr]
        shapes.append(tuple(int(d) for d in dims[offset : offset + int(ndim)]))  # type: ignore[index]
        offset += int(ndim)
    size = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
    if vector.shape != (size + 1,):
        raise ValueError(f"masked vector has shape {vector.shape}, expected ({size + 1},)")
    return vector, (shapes, [np.dtype(str(d)) for d in dtypes])  # type: ignore[union-attr]
