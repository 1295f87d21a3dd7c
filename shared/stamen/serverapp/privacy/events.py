"""What client-level privacy accounting talks about: the setting, a release, the spend.

Flower 1.42's types (`flwr.serverapp`), checked when built: a bad value is one clear
ValueError naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from stamen.common.errors import StamenError
from stamen.common.status import StatusCode

__all__ = [
    "GaussianPrivacyEvent",
    "NeighboringRelation",
    "PrivacyAccountant",
    "PrivacyBudgetExhausted",
    "PrivacyConfig",
    "PrivacySpent",
    "SamplingMethod",
]


class NeighboringRelation(StrEnum):
    """Which client populations count as neighbours: one client more or fewer, or one
    client replaced by another."""

    ADD_OR_REMOVE_ONE = "add-or-remove-one"
    REPLACE_ONE = "replace-one"


class SamplingMethod(StrEnum):
    """How the clients of a release are drawn, which decides the privacy amplification."""

    POISSON = "poisson"
    WITHOUT_REPLACEMENT = "without-replacement"
    NO_AMPLIFICATION = "no-amplification"


SUPPORTED_MODELS = {
    (SamplingMethod.POISSON, NeighboringRelation.ADD_OR_REMOVE_ONE),
    (SamplingMethod.WITHOUT_REPLACEMENT, NeighboringRelation.REPLACE_ONE),
    (SamplingMethod.NO_AMPLIFICATION, NeighboringRelation.ADD_OR_REMOVE_ONE),
}
"""The (sampling, neighbours) pairs an RDP bound exists for."""


@dataclass(frozen=True)
class PrivacyConfig:
    """Cumulative client-level privacy accounting for one run.

    Parameters
    ----------
    target_delta : float
        The delta at which the cumulative epsilon is reported (0 < delta < 1).
    population_size : int
        How many clients the samples are drawn from.
    neighboring_relation : NeighboringRelation
        Add-or-remove-one (Poisson, no amplification) or replace-one (without replacement).
    sampling_method : SamplingMethod
        How every release's clients are sampled.
    max_epsilon : float, optional
        A budget: strategies refuse a release that would exceed it.
    """

    target_delta: float
    population_size: int
    neighboring_relation: NeighboringRelation
    sampling_method: SamplingMethod
    max_epsilon: float | None = None

    def __post_init__(self) -> None:
        check_probability("target_delta", self.target_delta)
        check_positive_int("population_size", self.population_size)
        if self.max_epsilon is not None:
            check_positive_finite("max_epsilon", self.max_epsilon)
        model = (self.sampling_method, self.neighboring_relation)
        if model not in SUPPORTED_MODELS:
            raise ValueError(
                "Unsupported privacy accounting model: "
                f"sampling_method='{self.sampling_method.value}' with "
                f"neighboring_relation='{self.neighboring_relation.value}'."
            )


@dataclass(frozen=True)
class GaussianPrivacyEvent:
    """One release of the Gaussian mechanism on a sample of the population.

    Poisson sampling reads `sample_size / population_size` as the expected rate; sampling
    without replacement reads `sample_size` as exact; no amplification ignores both.
    """

    noise_multiplier: float
    sample_size: int
    population_size: int

    def __post_init__(self) -> None:
        check_positive_finite("noise_multiplier", self.noise_multiplier)
        check_positive_int("sample_size", self.sample_size)
        check_positive_int("population_size", self.population_size)
        if self.sample_size > self.population_size:
            raise ValueError("sample_size must not exceed population_size.")


@dataclass(frozen=True)
class PrivacySpent:
    """The privacy spent so far: (epsilon, delta) after `num_releases` releases."""

    epsilon: float
    delta: float
    num_releases: int
    accounting_method: str
    optimal_order: float | None = None


class PrivacyAccountant(Protocol):
    """What the DP strategies need from an accountant (`RdpAccountant` is one)."""

    @property
    def config(self) -> PrivacyConfig: ...

    @property
    def num_releases(self) -> int: ...

    def compose(self, event: GaussianPrivacyEvent, count: int = 1) -> None: ...

    def get_epsilon(self, delta: float) -> float: ...

    def get_delta(self, epsilon: float) -> float: ...

    def get_privacy_spent(self, delta: float | None = None) -> PrivacySpent: ...

    def would_exceed(
        self, event: GaussianPrivacyEvent, max_epsilon: float | None = None, count: int = 1
    ) -> bool: ...

    def state_dict(self) -> dict[str, object]: ...

    def load_state_dict(self, state: dict[str, object]) -> None: ...


class PrivacyBudgetExhausted(StamenError):
    """The next private release would spend more than the configured `max_epsilon`."""

    status = StatusCode.FAILED_PRECONDITION


def check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or not 0 < value < 1:
        raise ValueError(f"{name} must be finite and strictly between 0 and 1.")


def check_positive_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite.")


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer.")
