"""Central DP with adaptive clipping (Andrew et al., https://arxiv.org/abs/1905.03871).

The clipping norm follows a target quantile of the clients' update norms: after each
round it is multiplied by exp(-lr (b - q)), b being the noisy fraction of clipped updates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.errors import AggregationError
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord
from stamen.server.grid import Grid
from stamen.server.strategy.dp import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_update

from ._models import to_arrayrecord
from .dp_base import DifferentialPrivacyWrapper, validate_replies
from .strategy import Strategy

__all__ = [
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
]

logger = logging.getLogger(__name__)


class _AdaptiveClipping(DifferentialPrivacyWrapper):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(strategy, noise_multiplier, num_sampled_clients, seed)
        self._adapt_clipping_norm_from(
            initial_clipping_norm, target_clipped_quantile, clip_norm_lr, clipped_count_stddev
        )

    def _aggregate(
        self, server_round: int, replies: list[Message], clipped: int
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self._adapt(clipped, len(replies))
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays:
            arrays = self._add_noise(arrays)
        return arrays, metrics

    def summary(self) -> None:
        """Log the adaptive-clipping settings, then the wrapped strategy's."""
        logger.info("\t├──> DP settings:")
        logger.info("\t│\t├── Noise multiplier: %s", self.noise_multiplier)
        logger.info("\t│\t├── Clipping norm: %s", self.clipping_norm)
        logger.info("\t│\t├── Target clipped quantile: %s", self.target_clipped_quantile)
        logger.info("\t│\t└── Clip norm learning rate: %s", self.clip_norm_lr)
        self.strategy.summary()


class DifferentialPrivacyServerSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP with adaptive clipping done by the server.

    Each round the server clips every update to the current norm, lets `strategy`
    aggregate, adapts the norm and adds Gaussian noise. A round with a failed reply is not
    aggregated.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0).
    num_sampled_clients : int
        m, the clients sampled each round.
    initial_clipping_norm : float (default: 0.1)
        The clipping norm of the first round.
    target_clipped_quantile : float (default: 0.5)
        The fraction of updates the norm should end up clipping, in [0, 1].
    clip_norm_lr : float (default: 0.2)
        The learning rate of the norm's geometric update.
    clipped_count_stddev : float, optional
        The stddev of the noise on the count of clipped updates; default m / 20.
    seed : int, optional
        Seeds all noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            strategy,
            noise_multiplier,
            num_sampled_clients,
            initial_clipping_norm,
            target_clipped_quantile,
            clip_norm_lr,
            clipped_count_stddev,
            seed=seed,
        )
        self.current_arrays = ArrayRecord()

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Adaptive Clipping)"

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's instructions; remembers the round's arrays."""
        self.current_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip every update, aggregate, adapt the norm, add noise."""
        received = list(replies)
        if not validate_replies(received, self.num_sampled_clients):
            return None, None
        current = [array.numpy() for array in self.current_arrays.values()]
        clipped_count = 0
        for message in received:
            for name, record in list(message.content.array_records.items()):
                keys = list(record.keys())
                arrays = [record[key].numpy() for key in keys]
                clipped, was_clipped = clip_update(arrays, current, self.clipping_norm)
                clipped_count += int(was_clipped)
                message.content[name] = to_arrayrecord(keys, clipped)
            logger.info(
                "aggregate_train: arrays in `ArrayRecord` are clipped by value: %.4f.",
                self.clipping_norm,
            )
        return self._aggregate(server_round, received, clipped_count)


class DifferentialPrivacyClientSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP with adaptive clipping done by the clients' `adaptiveclipping_mod`.

    Sends the current norm in each training ConfigRecord (key "clipping_norm"); each
    reply's MetricRecord must report "norm_bit" (1 if the client clipped). The server lets
    `strategy` aggregate, adapts the norm and adds Gaussian noise. Use with
    `ClientApp(mods=[adaptiveclipping_mod])`.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate gets differential privacy (usually FedAvg).
    noise_multiplier : float
        z, the Gaussian noise multiplier (>= 0).
    num_sampled_clients : int
        m, the clients sampled each round.
    initial_clipping_norm : float (default: 0.1)
        The clipping norm of the first round.
    target_clipped_quantile : float (default: 0.5)
        The fraction of updates the norm should end up clipping, in [0, 1].
    clip_norm_lr : float (default: 0.2)
        The learning rate of the norm's geometric update.
    clipped_count_stddev : float, optional
        The stddev of the noise on the count of clipped updates; default m / 20.
    seed : int, optional
        Seeds all noise (keyword only; not in Flower, whose noise is unseeded).
    """

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Adaptive Clipping)"

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's instructions, with the clipping norm in the config."""
        config[KEY_CLIPPING_NORM] = self.clipping_norm
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate, adapt the norm from the replies' norm bits, add noise."""
        received = list(replies)
        if not validate_replies(received, self.num_sampled_clients):
            return None, None
        clipped_count = 0
        for message in received:
            bits = [
                m[KEY_NORM_BIT]
                for m in message.content.metric_records.values()
                if KEY_NORM_BIT in m
            ]
            if not bits:
                raise AggregationError(
                    f"KEY_NORM_BIT ('{KEY_NORM_BIT}') not found in the MetricRecord of the reply "
                    f"from node {message.metadata.src_node_id}: is adaptiveclipping_mod used?"
                )
            clipped_count += int(bool(bits[0]))
        return self._aggregate(server_round, received, clipped_count)
