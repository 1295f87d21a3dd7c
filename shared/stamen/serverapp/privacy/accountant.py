"""`RdpAccountant`: cumulative client-level privacy of a run's Gaussian releases.

RDP adds up across releases order by order; (epsilon, delta) is read off the sum. The
accountant keeps the ledger of composed events, so its state is a small JSON document
(Flower's schema, version 1) and the numbers are rebuilt from it on load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .events import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    PrivacySpent,
    SamplingMethod,
    check_positive_int,
)
from .rdp import (
    DEFAULT_ORDERS,
    compute_delta,
    compute_epsilon,
    rdp_gaussian,
    rdp_poisson_gaussian,
    rdp_without_replacement_gaussian,
)

__all__ = ["RdpAccountant"]

_SCHEMA_VERSION = 1
_METHOD = "rdp"


class RdpAccountant:
    """Tracks cumulative privacy loss with Renyi differential privacy.

    Parameters
    ----------
    config : PrivacyConfig
        The population, neighbouring relation, sampling method, target delta and budget.
    orders : tuple[float, ...], optional
        The Renyi orders to evaluate (each finite and > 1); dp-accounting's by default.
    """

    def __init__(self, config: PrivacyConfig, orders: tuple[float, ...] | None = None) -> None:
        self._config = config
        self._orders = DEFAULT_ORDERS if orders is None else _check_orders(orders)
        self._rdp = [0.0] * len(self._orders)
        self._compositions: list[tuple[GaussianPrivacyEvent, int]] = []

    @property
    def config(self) -> PrivacyConfig:
        return self._config

    @property
    def num_releases(self) -> int:
        """How many releases were composed."""
        return sum(count for _, count in self._compositions)

    def compose(self, event: GaussianPrivacyEvent, count: int = 1) -> None:
        """Add `count` identical releases of `event` to the spend."""
        self._check_event(event)
        _check_count(count)
        self._rdp = _plus(self._rdp, self._event_rdp(event), count)
        self._compositions.append((event, count))

    def get_epsilon(self, delta: float) -> float:
        """The cumulative epsilon at `delta`."""
        _check_delta(delta)
        return compute_epsilon(self._orders, self._rdp, delta)[0]

    def get_delta(self, epsilon: float) -> float:
        """The cumulative delta at `epsilon`."""
        if isinstance(epsilon, bool) or not math.isfinite(epsilon) or epsilon < 0:
            raise ValueError("epsilon must be non-negative and finite.")
        return compute_delta(self._orders, self._rdp, epsilon)[0]

    def get_privacy_spent(self, delta: float | None = None) -> PrivacySpent:
        """The spend at `delta` (the config's target delta by default)."""
        target = self._config.target_delta if delta is None else delta
        _check_delta(target)
        epsilon, order = compute_epsilon(self._orders, self._rdp, target)
        return PrivacySpent(epsilon, target, self.num_releases, _METHOD, order)

    def would_exceed(
        self, event: GaussianPrivacyEvent, max_epsilon: float | None = None, count: int = 1
    ) -> bool:
        """Whether `count` more releases of `event` would take epsilon (at the target
        delta) above `max_epsilon` (the config's by default). Changes nothing."""
        self._check_event(event)
        _check_count(count)
        limit = self._config.max_epsilon if max_epsilon is None else max_epsilon
        if limit is None:
            raise ValueError(
                "max_epsilon must be supplied either in PrivacyConfig or to would_exceed()."
            )
        if isinstance(limit, bool) or not math.isfinite(limit) or limit <= 0:
            raise ValueError("max_epsilon must be positive and finite.")
        projected = _plus(self._rdp, self._event_rdp(event), count)
        return compute_epsilon(self._orders, projected, self._config.target_delta)[0] > limit

    def state_dict(self) -> dict[str, object]:
        """The accountant as JSON-ready data: its config, orders and composed events."""
        config = self._config
        return {
            "schema_version": _SCHEMA_VERSION,
            "backend": _METHOD,
            "config": {
                "target_delta": config.target_delta,
                "population_size": config.population_size,
                "neighboring_relation": config.neighboring_relation.value,
                "sampling_method": config.sampling_method.value,
                "max_epsilon": config.max_epsilon,
            },
            "orders": list(self._orders),
            "compositions": [
                {
                    "event": {
                        "noise_multiplier": event.noise_multiplier,
                        "sample_size": event.sample_size,
                        "population_size": event.population_size,
                    },
                    "count": count,
                }
                for event, count in self._compositions
            ],
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what `state_dict` returned; its config must equal this one's."""
        if state.get("schema_version") != _SCHEMA_VERSION:
            raise ValueError(
                f"Unsupported accountant state schema version: {state.get('schema_version')!r}."
            )
        if state.get("backend") != _METHOD:
            raise ValueError("Accountant state was produced by a different backend.")
        if _parse_config(state.get("config")) != self._config:
            raise ValueError(
                "Accountant state privacy configuration does not match the current configuration."
            )
        orders = _parse_orders(state.get("orders"))
        compositions = _parse_compositions(state.get("compositions"))
        rdp = [0.0] * len(orders)
        for event, count in compositions:
            self._check_event(event)
            rdp = _plus(rdp, self._event_rdp(event, orders), count)
        self._orders, self._rdp, self._compositions = orders, rdp, compositions

    def _event_rdp(
        self, event: GaussianPrivacyEvent, orders: Sequence[float] | None = None
    ) -> list[float]:
        orders = self._orders if orders is None else orders
        sigma = event.noise_multiplier
        q = event.sample_size / event.population_size
        method = self._config.sampling_method
        if method is SamplingMethod.POISSON:
            return rdp_poisson_gaussian(q, sigma, orders)
        if method is SamplingMethod.WITHOUT_REPLACEMENT:
            return rdp_without_replacement_gaussian(q, sigma, orders)
        return rdp_gaussian(sigma, orders)

    def _check_event(self, event: GaussianPrivacyEvent) -> None:
        if event.population_size != self._config.population_size:
            raise ValueError(
                "Privacy event population_size does not match PrivacyConfig: "
                f"{event.population_size} != {self._config.population_size}."
            )


def _plus(rdp: list[float], event: list[float], count: int) -> list[float]:
    return [total + count * value for total, value in zip(rdp, event, strict=True)]


def _check_orders(orders: Sequence[float]) -> tuple[float, ...]:
    checked = tuple(float(order) for order in orders)
    if not checked:
        raise ValueError("RDP orders must be non-empty.")
    if any(not math.isfinite(order) or order <= 1 for order in checked):
        raise ValueError("Every RDP order must be finite and greater than 1.")
    return checked


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise ValueError("count must be a positive integer.")


def _check_delta(delta: float) -> None:
    if not math.isfinite(delta) or not 0 < delta < 1:
        raise ValueError("delta must be finite and strictly between 0 and 1.")


def _parse_config(value: object) -> PrivacyConfig:
    config = _dict(value, "config")
    try:
        max_epsilon = config["max_epsilon"]
        return PrivacyConfig(
            target_delta=_number(config["target_delta"], "target_delta"),
            population_size=_integer(config["population_size"], "population_size"),
            neighboring_relation=NeighboringRelation(
                _text(config["neighboring_relation"], "neighboring_relation")
            ),
            sampling_method=SamplingMethod(_text(config["sampling_method"], "sampling_method")),
            max_epsilon=None if max_epsilon is None else _number(max_epsilon, "max_epsilon"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("Invalid privacy configuration in accountant state.") from exc


def _parse_orders(value: object) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError("Accountant state orders must be a list.")
    try:
        return _check_orders([float(order) for order in value])
    except TypeError as exc:
        raise ValueError("Accountant state contains invalid RDP orders.") from exc


def _parse_compositions(value: object) -> list[tuple[GaussianPrivacyEvent, int]]:
    if not isinstance(value, list):
        raise ValueError("Accountant state compositions must be a list.")
    compositions: list[tuple[GaussianPrivacyEvent, int]] = []
    try:
        for item in value:
            composition = _dict(item, "composition")
            fields = _dict(composition["event"], "event")
            event = GaussianPrivacyEvent(
                noise_multiplier=_number(fields["noise_multiplier"], "noise_multiplier"),
                sample_size=_integer(fields["sample_size"], "sample_size"),
                population_size=_integer(fields["population_size"], "population_size"),
            )
            count = _integer(composition["count"], "count")
            check_positive_int("count", count)
            compositions.append((event, count))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("Invalid composition in accountant state.") from exc
    return compositions


def _dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"Accountant state {name} must be a dictionary.")
    return value


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Accountant state {name} must be an integer.")
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (float, int)):
        raise ValueError(f"Accountant state {name} must be numeric.")
    return float(value)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"Accountant state {name} must be a string.")
    return value
