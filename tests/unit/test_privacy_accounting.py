"""Stamen's RDP accountant gives Flower's numbers, and refuses bad input with one error.

Golden values: `tests/golden/gen_privacy.py` ran Flower 1.42's `RdpAccountant` (on
Google's dp-accounting) and wrote `tests/golden/data/privacy.json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from stamen.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)
from stamen.serverapp.privacy.rdp import (
    compute_delta,
    compute_epsilon,
    rdp_gaussian,
    rdp_poisson_gaussian,
    rdp_without_replacement_gaussian,
)

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "data" / "privacy.json").read_text())
RTOL = 1e-7
"""Relative: fractional orders sum special-function series whose last digits differ."""

MODELS = {
    "poisson": (SamplingMethod.POISSON, NeighboringRelation.ADD_OR_REMOVE_ONE),
    "without-replacement": (SamplingMethod.WITHOUT_REPLACEMENT, NeighboringRelation.REPLACE_ONE),
    "no-amplification": (SamplingMethod.NO_AMPLIFICATION, NeighboringRelation.ADD_OR_REMOVE_ONE),
}


def config(model: str, population: int, **kwargs: Any) -> PrivacyConfig:
    sampling, relation = MODELS[model]
    return PrivacyConfig(1e-5, population, relation, sampling, **kwargs)


def close(ours: float, theirs: float) -> bool:
    if math.isinf(theirs):
        return ours == theirs
    return math.isclose(ours, theirs, rel_tol=RTOL, abs_tol=1e-300)


@pytest.mark.parametrize(
    "case", GOLDEN["single"], ids=lambda c: f"{c['kind']}-{c['rate']}-{c['sigma']}"
)
def test_rdp_of_one_release_matches_dp_accounting(case: dict[str, Any]) -> None:
    orders, sigma = case["orders"], case["sigma"]
    if case["kind"] == "poisson":
        ours = rdp_poisson_gaussian(case["rate"], sigma, orders)
    elif case["kind"] == "without-replacement":
        sample, population = case["rate"]
        ours = rdp_without_replacement_gaussian(sample / population, sigma, orders)
    else:
        ours = rdp_gaussian(sigma, orders)
    theirs = [math.inf if r is None else r for r in case["rdp"]]
    mismatched = [
        (order, o, t) for order, o, t in zip(orders, ours, theirs, strict=True) if not close(o, t)
    ]
    assert not mismatched


@pytest.mark.parametrize(
    "case", GOLDEN["scenarios"], ids=lambda c: f"{c['model']}-{c['population']}"
)
def test_accountant_matches_flower_release_by_release(case: dict[str, Any]) -> None:
    orders = None if case["orders"] is None else tuple(case["orders"])
    accountant = RdpAccountant(config(case["model"], case["population"]), orders)
    for step in case["steps"]:
        sigma, sample, count = step["release"]
        event = GaussianPrivacyEvent(sigma, sample, case["population"])
        for limit, expected in step["would_exceed_before"].items():
            assert accountant.would_exceed(event, float(limit), count) is expected
        accountant.compose(event, count)
        for delta, epsilon in step["epsilon"].items():
            assert close(accountant.get_epsilon(float(delta)), epsilon)
        for epsilon, delta in step["delta"].items():
            assert close(accountant.get_delta(float(epsilon)), delta)
        spent = accountant.get_privacy_spent()
        epsilon, delta, releases, order = step["spent"]
        assert close(spent.epsilon, epsilon)
        assert (spent.delta, spent.num_releases, spent.optimal_order) == (delta, releases, order)
        assert spent.accounting_method == "rdp"
    assert accountant.state_dict() == case["state"]


def test_state_round_trips_and_rebuilds_the_numbers() -> None:
    case = GOLDEN["scenarios"][0]
    accountant = RdpAccountant(config(case["model"], case["population"]))
    accountant.load_state_dict(json.loads(json.dumps(case["state"])))
    assert accountant.num_releases == case["steps"][-1]["spent"][2]
    assert close(accountant.get_epsilon(1e-5), case["steps"][-1]["spent"][0])
    assert accountant.state_dict() == case["state"]


def test_would_exceed_changes_nothing_and_uses_the_configured_budget() -> None:
    accountant = RdpAccountant(config("poisson", 100, max_epsilon=2.5))
    event = GaussianPrivacyEvent(1.0, 10, 100)
    assert not accountant.would_exceed(event)
    assert accountant.would_exceed(event, count=100)
    assert accountant.num_releases == 0
    assert accountant.get_epsilon(1e-5) == 0.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: config("poisson", 0), "population_size must be a positive integer"),
        (lambda: config("poisson", 10, max_epsilon=-1.0), "max_epsilon must be positive"),
        (
            lambda: PrivacyConfig(
                1.0, 10, NeighboringRelation.ADD_OR_REMOVE_ONE, SamplingMethod.POISSON
            ),
            "target_delta must be finite and strictly between 0 and 1",
        ),
        (
            lambda: PrivacyConfig(
                1e-5, 10, NeighboringRelation.REPLACE_ONE, SamplingMethod.POISSON
            ),
            "Unsupported privacy accounting model",
        ),
        (lambda: GaussianPrivacyEvent(0.0, 1, 10), "noise_multiplier must be positive"),
        (lambda: GaussianPrivacyEvent(1.0, 11, 10), "sample_size must not exceed"),
        (lambda: GaussianPrivacyEvent(1.0, True, 10), "sample_size must be a positive integer"),
        (lambda: RdpAccountant(config("poisson", 10), ()), "RDP orders must be non-empty"),
        (lambda: RdpAccountant(config("poisson", 10), (1.0, 2.0)), "greater than 1"),
    ],
)
def test_bad_settings_raise_one_clear_error(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_calls_raise_one_clear_error() -> None:
    accountant = RdpAccountant(config("poisson", 10))
    event = GaussianPrivacyEvent(1.0, 2, 10)
    with pytest.raises(ValueError, match="population_size does not match"):
        accountant.compose(GaussianPrivacyEvent(1.0, 2, 20))
    with pytest.raises(ValueError, match="count must be a positive integer"):
        accountant.compose(event, 0)
    with pytest.raises(ValueError, match="delta must be finite"):
        accountant.get_epsilon(0.0)
    with pytest.raises(ValueError, match="epsilon must be non-negative"):
        accountant.get_delta(-1.0)
    with pytest.raises(ValueError, match="max_epsilon must be supplied"):
        accountant.would_exceed(event)
    assert accountant.num_releases == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema version"),
        ({"backend": "pld"}, "different backend"),
        ({"config": {"target_delta": 1e-5}}, "Invalid privacy configuration"),
        ({"orders": "all"}, "orders must be a list"),
        ({"orders": [0.5]}, "greater than 1"),
        ({"compositions": [{"event": {}, "count": 1}]}, "Invalid composition"),
    ],
)
def test_bad_state_is_refused_and_changes_nothing(change: dict[str, Any], message: str) -> None:
    accountant = RdpAccountant(config("poisson", 10))
    accountant.compose(GaussianPrivacyEvent(1.0, 2, 10))
    before = accountant.state_dict()
    with pytest.raises(ValueError, match=message):
        accountant.load_state_dict({**before, **change})
    assert accountant.state_dict() == before


def test_state_of_another_config_is_refused() -> None:
    state = RdpAccountant(config("poisson", 10)).state_dict()
    with pytest.raises(ValueError, match="does not match the current configuration"):
        RdpAccountant(config("poisson", 11)).load_state_dict(state)


def test_conversion_edge_cases() -> None:
    assert compute_epsilon([2.0], [0.0], 0.0) == (0.0, 0.0)
    assert compute_epsilon([2.0], [1.0], 0.0) == (math.inf, 0.0)
    assert compute_delta([2.0], [0.0], 1.0) == (0.0, 2.0)
    with pytest.raises(ValueError, match="2 orders but 1 RDP values"):
        compute_epsilon([2.0, 3.0], [1.0], 1e-5)
    with pytest.raises(ValueError, match="Renyi order must be at least 1"):
        compute_delta([0.5], [1.0], 1.0)
