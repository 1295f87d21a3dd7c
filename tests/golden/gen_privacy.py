"""Golden values: Flower 1.42's RdpAccountant (on dp-accounting) -> data/privacy.json.

Run under Flower's venv with its `dp` extra (`make golden`). For each accounting model
(Poisson / add-or-remove-one, without replacement / replace-one, no amplification), a
sequence of composed releases and, after each, epsilon and delta at fixed targets, the
privacy spent with its optimal order, and `would_exceed` for the next release; plus the
per-order RDP of single releases, which tests the math on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant as BackendAccountant
from dp_accounting.rdp.rdp_privacy_accountant import NeighborRel
from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)

OUT = Path(__file__).parent / "data" / "privacy.json"

MODELS = {
    "poisson": (SamplingMethod.POISSON, NeighboringRelation.ADD_OR_REMOVE_ONE),
    "without-replacement": (SamplingMethod.WITHOUT_REPLACEMENT, NeighboringRelation.REPLACE_ONE),
    "no-amplification": (SamplingMethod.NO_AMPLIFICATION, NeighboringRelation.ADD_OR_REMOVE_ONE),
}

# (population, [(noise multiplier, sample size, count), ...], orders or None)
SCENARIOS = [
    (100, [(1.0, 10, 1), (1.0, 10, 4), (0.7, 20, 2)], None),
    (1000, [(2.0, 5, 10), (0.5, 50, 1)], None),
    (50, [(1.3, 50, 3)], None),
    (200, [(0.8, 16, 5)], (1.5, 2.0, 3.0, 5.5, 8.0, 16.0, 32.0, 64.0)),
]
DELTAS = [1e-5, 1e-3]
EPSILONS = [0.5, 2.0, 8.0]
MAX_EPSILONS = [1.0, 10.0]

# Single releases: (sampling, rate or (sample, population), sigma)
SINGLE = [
    ("poisson", 0.01, 1.0),
    ("poisson", 0.1, 0.6),
    ("poisson", 0.5, 2.0),
    ("poisson", 0.05, 5.0),
    ("without-replacement", (10, 100), 1.0),
    ("without-replacement", (3, 1000), 0.7),
    ("without-replacement", (40, 50), 2.5),
    ("gaussian", 1.0, 1.5),
]


def scenario(model: str, population: int, releases: list, orders: tuple | None) -> dict:
    sampling, relation = MODELS[model]
    config = PrivacyConfig(1e-5, population, relation, sampling, max_epsilon=None)
    accountant = RdpAccountant(config, orders=orders)
    steps = []
    for sigma, sample, count in releases:
        event = GaussianPrivacyEvent(sigma, sample, population)
        exceed = {str(m): accountant.would_exceed(event, m, count) for m in MAX_EPSILONS}
        accountant.compose(event, count)
        spent = accountant.get_privacy_spent()
        steps.append(
            {
                "release": [sigma, sample, count],
                "would_exceed_before": exceed,
                "epsilon": {str(d): accountant.get_epsilon(d) for d in DELTAS},
                "delta": {str(e): accountant.get_delta(e) for e in EPSILONS},
                "spent": [spent.epsilon, spent.delta, spent.num_releases, spent.optimal_order],
            }
        )
    return {
        "model": model,
        "population": population,
        "orders": None if orders is None else list(orders),
        "steps": steps,
        "state": accountant.state_dict(),
    }


def single(kind: str, rate: object, sigma: float) -> dict:
    if kind == "poisson":
        event = dp_event.PoissonSampledDpEvent(rate, dp_event.GaussianDpEvent(sigma))
        backend = BackendAccountant(neighboring_relation=NeighborRel.ADD_OR_REMOVE_ONE)
    elif kind == "without-replacement":
        sample, population = rate  # type: ignore[misc]
        event = dp_event.SampledWithoutReplacementDpEvent(
            population, sample, dp_event.GaussianDpEvent(sigma)
        )
        backend = BackendAccountant(neighboring_relation=NeighborRel.REPLACE_ONE)
    else:
        event = dp_event.GaussianDpEvent(sigma)
        backend = BackendAccountant()
    backend.compose(event)
    rdp = [float(x) if np.isfinite(x) else None for x in backend.rdp]
    return {"kind": kind, "rate": rate, "sigma": sigma, "orders": list(backend.orders), "rdp": rdp}


def main() -> None:
    facts = {
        "scenarios": [
            scenario(model, population, releases, orders)
            for model in MODELS
            for population, releases, orders in SCENARIOS
        ],
        "single": [single(kind, rate, sigma) for kind, rate, sigma in SINGLE],
    }
    OUT.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
