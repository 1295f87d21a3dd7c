"""`LocalDpMod`: local differential privacy, clipping and noising on the node itself."""

from __future__ import annotations

import logging
import math

import numpy as np

from stamen.client.client_app import ClientAppCallable
from stamen.common.context import Context
from stamen.common.message import Message, MessageType
from stamen.common.records import Array, ArrayRecord
from stamen.server.strategy.dp import add_gaussian_noise

from .centraldp_mods import clip_local_update, count_error, key_mismatch_error, refuse

__all__ = ["LocalDpMod"]

logger = logging.getLogger(__name__)


class LocalDpMod:
    """Clip each training update to `clipping_norm` and add Gaussian noise on the node.

    The noise's stddev is sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon (the Gaussian
    mechanism). Use as `ClientApp(mods=[LocalDpMod(...)])`; messages other than training
    messages pass through.

    Parameters
    ----------
    clipping_norm : float
        The L2 norm the update is clipped to (> 0).
    sensitivity : float
        The sensitivity of the client model (>= 0).
    epsilon : float
        The privacy budget (>= 0); smaller is more private.
    delta : float
        The probability that the guarantee fails (>= 0); smaller is stricter.
    seed : int, optional
        Seeds the noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        clipping_norm: float,
        sensitivity: float,
        epsilon: float,
        delta: float,
        *,
        seed: int | None = None,
    ) -> None:
        if clipping_norm <= 0:
            raise ValueError("The clipping norm should be a positive value.")
        if sensitivity < 0:
            raise ValueError("The sensitivity should be a non-negative value.")
        if epsilon < 0:
            raise ValueError("Epsilon should be a non-negative value.")
        if delta < 0:
            raise ValueError("Delta should be a non-negative value.")
        self.clipping_norm = clipping_norm
        self.sensitivity = sensitivity
        self.epsilon = epsilon
        self.delta = delta
        self.rng = np.random.default_rng(seed)

    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        """Run the ClientApp, then clip and noise the arrays of its training reply."""
        if msg.metadata.message_type.split(".", 1)[0] != MessageType.TRAIN:
            return call_next(msg, ctxt)
        if len(msg.content.array_records) != 1:
            return refuse(msg, count_error("LocalDpMod", msg, ArrayRecord))
        received = next(iter(msg.content.array_records.values()))
        reply = call_next(msg, ctxt)
        if reply.has_error():
            return reply
        if len(reply.content.array_records) != 1:
            return refuse(msg, count_error("LocalDpMod", reply, ArrayRecord))
        key, sent = next(iter(reply.content.array_records.items()))
        clipped, _ = clip_local_update("LocalDpMod", received, sent, self.clipping_norm)
        if clipped is None:
            return refuse(msg, key_mismatch_error("LocalDpMod"))
        logger.info("LocalDpMod: parameters are clipped by value: %.4f.", self.clipping_norm)
        std_dev = self.sensitivity * math.sqrt(2 * math.log(1.25 / self.delta)) / self.epsilon
        keys = list(clipped.keys())
        noisy = add_gaussian_noise([clipped[k].numpy() for k in keys], std_dev, self.rng)
        logger.info("LocalDpMod: local DP noise with %.4f stddev added to parameters", std_dev)
        reply.content[key] = ArrayRecord({k: Array(a) for k, a in zip(keys, noisy, strict=True)})
        return reply
