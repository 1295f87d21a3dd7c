"""Central DP with a fixed clipping norm, clipping on the server or on the clients."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord
from stamen.server.grid import Grid
from stamen.server.strategy.dp import KEY_CLIPPING_NORM, clip_update

from ..privacy import PrivacyAccountant, PrivacySpent
from ._models import to_arrayrecord
from .dp_base import DifferentialPrivacyWrapper, validate_replies
from .dp_ledger import PrivacyLedger
from .strategy import Strategy

__all__ = [
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideFixedClipping",
]

logger = logging.getLogger(__name__)


class _FixedClipping(DifferentialPrivacyWrapper):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        accountant: PrivacyAccountant | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(strategy, noise_multiplier, num_sampled_clients, seed)
        self._fix_clipping_norm(clipping_norm)
        self.ledger = PrivacyLedger(accountant, strategy, noise_multiplier, num_sampled_clients)
        self.accountant = accountant

    def privacy_spent(self) -> PrivacySpent | None:
        """The privacy spent so far, or None without an accountant."""
        return self.ledger.spent()

    def _summary_privacy(self) -> None:
        self.ledger.summary()

    def _configure(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = self.strategy.configure_train(server_round, arrays, config, grid)
        return self.ledger.prepare(server_round, messages)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip the updates (where this wrapper does), aggregate them with the wrapped
        strategy, add noise, and account for the release."""
        event = self.ledger.take(server_round)
        received = list(replies)
        if not validate_replies(received, self.num_sampled_clients, strict=self.ledger.strict):
            return None, None
        self.ledger.check_uniform_weights(received)
        self._clip(received)
        arrays, metrics = self.strategy.aggregate_train(server_round, received)
        if arrays:
            arrays = self._add_noise(arrays)
            self.ledger.release(event)
        return arrays, metrics

    def _clip(self, replies: list[Message]) -> None:
        """Clip the replies' updates where the server clips; here the clients did."""


class DifferentialPrivacyServerSideFixedClipping(_FixedClipping):
    """Central DP: the server clips each client's update to `clipping_norm`, lets
    `strategy` aggregate, and adds Gaussian noise to the aggregate. A round with a failed
    reply is not aggregated.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0); 1.0 or more for strong privacy.
    clipping_norm : float
        C, the L2 norm every client's update is clipped to (> 0).
    num_sampled_clients : int
        m, the clients sampled each round; the noise's stddev is z C / m.
    accountant : PrivacyAccountant, optional
        Keyword only. Tracks the privacy spent on model updates (`privacy_spent()`);
        needs no-amplification sampling, a FedAvg strategy and equally weighted replies,
        and refuses a round that would exceed its `max_epsilon` before it starts.
    seed : int, optional
        Seeds the noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        accountant: PrivacyAccountant | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            strategy,
            noise_multiplier,
            clipping_norm,
            num_sampled_clients,
            accountant=accountant,
            seed=seed,
        )
        self.current_arrays = ArrayRecord()

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Fixed Clipping)"

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's instructions; remembers the round's arrays."""
        self.current_arrays = arrays
        return self._configure(server_round, arrays, config, grid)

    def _clip(self, replies: list[Message]) -> None:
        """Clip every update to `clipping_norm` around the round's arrays."""
        current = [array.numpy() for array in self.current_arrays.values()]
        for message in replies:
            for name, record in list(message.content.array_records.items()):
                keys = list(record.keys())
                arrays = [record[key].numpy() for key in keys]
                clipped, _ = clip_update(arrays, current, self.clipping_norm)
                message.content[name] = to_arrayrecord(keys, clipped)
            logger.info("aggregate_fit: parameters are clipped by value: %.4f.", self.clipping_norm)


class DifferentialPrivacyClientSideFixedClipping(_FixedClipping):
    """Central DP with clipping on the clients: sends `clipping_norm` in each training
    ConfigRecord (key "clipping_norm") for `fixedclipping_mod` to clip with, lets `strategy`
    aggregate, and adds Gaussian noise. Use with `ClientApp(mods=[fixedclipping_mod])`.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0); 1.0 or more for strong privacy.
    clipping_norm : float
        C, the L2 norm every client's update is clipped to (> 0).
    num_sampled_clients : int
        m, the clients sampled each round; the noise's stddev is z C / m.
    accountant : PrivacyAccountant, optional
        Keyword only. Tracks the privacy spent on model updates (`privacy_spent()`);
        needs no-amplification sampling, a FedAvg strategy and equally weighted replies,
        and refuses a round that would exceed its `max_epsilon` before it starts.
    seed : int, optional
        Seeds the noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Fixed Clipping)"

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's instructions, with the clipping norm in the config."""
        config[KEY_CLIPPING_NORM] = self.clipping_norm
        return self._configure(server_round, arrays, config, grid)
