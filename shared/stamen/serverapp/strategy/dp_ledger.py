"""The privacy accountant's side of the fixed-clipping DP wrappers (Flower's rules).

A round's release is described when its instructions go out, and refused then if it
would exceed the budget, before any node trains; it is composed only once its noisy
aggregate exists. Accounting holds for the setting its bound assumes: no amplification
by sampling, exactly `num_sampled_clients` equally weighted FedAvg replies, no failures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from stamen.common.message import Message

from ..privacy import (
    GaussianPrivacyEvent,
    PrivacyAccountant,
    PrivacyBudgetExhausted,
    PrivacySpent,
    SamplingMethod,
)
from .fedavg import FedAvg
from .strategy import Strategy

__all__ = ["PrivacyLedger"]

logger = logging.getLogger(__name__)


class PrivacyLedger:
    """Pending releases by round, for one wrapper; with no accountant, does nothing."""

    def __init__(
        self,
        accountant: PrivacyAccountant | None,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
    ) -> None:
        if accountant is not None:
            if noise_multiplier <= 0:
                raise ValueError(
                    "The noise multiplier must be positive when accounting is enabled."
                )
            if accountant.config.sampling_method is not SamplingMethod.NO_AMPLIFICATION:
                raise ValueError(
                    "Fixed-clipping accounting currently requires "
                    "sampling_method='no-amplification'."
                )
            if not isinstance(strategy, FedAvg) or (
                type(strategy).aggregate_train is not FedAvg.aggregate_train
            ):
                raise ValueError(
                    "Fixed-clipping accounting currently requires a strategy using "
                    "FedAvg.aggregate_train."
                )
        self.accountant = accountant
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.num_sampled_clients = num_sampled_clients
        self._pending: dict[int, GaussianPrivacyEvent | None] = {}

    @property
    def strict(self) -> bool:
        """Whether a reply count other than `num_sampled_clients` skips aggregation."""
        return self.accountant is not None

    def spent(self) -> PrivacySpent | None:
        return None if self.accountant is None else self.accountant.get_privacy_spent()

    def prepare(self, server_round: int, messages: Iterable[Message]) -> Iterable[Message]:
        """The round's instructions, its release noted; PrivacyBudgetExhausted if that
        release would take epsilon over the accountant's `max_epsilon`."""
        if self.accountant is None:
            return messages
        if server_round in self._pending:
            raise ValueError(f"Round {server_round} already has a pending privacy event.")
        sent = list(messages)
        if not sent:
            self._pending[server_round] = None
            return sent
        if len(sent) != self.num_sampled_clients:
            raise ValueError(
                "The configured sample size does not match num_sampled_clients: "
                f"{len(sent)} != {self.num_sampled_clients}."
            )
        event = GaussianPrivacyEvent(
            self.noise_multiplier, len(sent), self.accountant.config.population_size
        )
        if self.accountant.config.max_epsilon is not None and self.accountant.would_exceed(event):
            spent = self.accountant.get_privacy_spent()
            raise PrivacyBudgetExhausted(
                "The next private release would exceed max_epsilon "
                f"(current epsilon: {spent.epsilon}, delta: {spent.delta})."
            )
        self._pending[server_round] = event
        return sent

    def take(self, server_round: int) -> GaussianPrivacyEvent | None:
        """The release noted for `server_round`, no longer pending."""
        if self.accountant is None:
            return None
        if server_round not in self._pending:
            raise ValueError(f"Round {server_round} has no pending privacy event.")
        return self._pending.pop(server_round)

    def check_uniform_weights(self, replies: list[Message]) -> None:
        """ValueError unless every reply has one MetricRecord with the same positive,
        finite weight: the noise is calibrated to an unweighted mean."""
        if self.accountant is None:
            return
        assert isinstance(self.strategy, FedAvg)  # checked when built
        key = self.strategy.weighted_by_key
        weights: list[float] = []
        for reply in replies:
            records = reply.content.metric_records
            if len(records) != 1:
                raise ValueError("Accounted aggregation requires exactly one MetricRecord.")
            weight = next(iter(records.values())).get(key)
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not math.isfinite(weight)
                or weight <= 0
            ):
                raise ValueError("Accounted aggregation requires a positive finite client weight.")
            weights.append(float(weight))
        if any(weight != weights[0] for weight in weights[1:]):
            raise ValueError("Accounted aggregation requires equal client weights.")

    def release(self, event: GaussianPrivacyEvent | None) -> None:
        """Compose a release whose noisy aggregate now exists, and log the spend."""
        if self.accountant is None or event is None:
            return
        self.accountant.compose(event)
        spent = self.accountant.get_privacy_spent()
        logger.info(
            "Privacy spent: epsilon=%.6f at delta=%g after %d releases",
            spent.epsilon,
            spent.delta,
            spent.num_releases,
        )

    def summary(self) -> None:
        spent = self.spent()
        if spent is not None:
            logger.info(
                "\t├──> Privacy spent: epsilon=%.6f at delta=%g", spent.epsilon, spent.delta
            )
