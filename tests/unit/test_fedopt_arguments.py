"""FedOpt, FedAdam, FedYogi and FedAdagrad share one constructor per API: each class
still gets Flower's defaults for its optimizer, and a given argument wins."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from stamen.common import ndarrays_to_parameters
from stamen.server import strategy as legacy
from stamen.serverapp.strategy import fedopt as message

# Flower 1.42's defaults: (eta, eta_l, beta_1, beta_2, tau) for (Message API, legacy).
DEFAULTS = {
    "FedOpt": ((1e-1, 1e-1, 0.0, 0.0, 1e-3), (1e-1, 1e-1, 0.0, 0.0, 1e-9)),
    "FedAdam": ((1e-1, 1e-1, 0.9, 0.99, 1e-3), (1e-1, 1e-1, 0.9, 0.99, 1e-9)),
    "FedYogi": ((1e-2, 0.0316, 0.9, 0.99, 1e-3), (1e-2, 0.0316, 0.9, 0.99, 1e-3)),
    "FedAdagrad": ((1e-1, 1e-1, 0.0, 0.0, 1e-3), (1e-1, 1e-1, 0.0, 0.0, 1e-9)),
}


def build(api: str, name: str, **kwargs: Any) -> Any:
    if api == "message":
        return getattr(message, name)(**kwargs)
    initial = ndarrays_to_parameters([np.zeros(3, np.float32)])
    return getattr(legacy, name)(initial_parameters=initial, **kwargs)


def settings(strategy: Any) -> tuple[float, ...]:
    return (strategy.eta, strategy.eta_l, strategy.beta_1, strategy.beta_2, strategy.tau)


@pytest.mark.parametrize("api", ["message", "legacy"])
@pytest.mark.parametrize("name", DEFAULTS)
def test_each_class_has_flowers_defaults(api: str, name: str) -> None:
    expected = DEFAULTS[name][0 if api == "message" else 1]
    strategy = build(api, name)
    assert settings(strategy) == expected
    variant = None if name == "FedOpt" else name.removeprefix("Fed").lower()
    assert (strategy.optimizer is None) == (variant is None)
    if strategy.optimizer is not None:
        assert strategy.optimizer.variant == variant


@pytest.mark.parametrize("api", ["message", "legacy"])
def test_a_given_argument_wins_over_the_default(api: str) -> None:
    strategy = build(api, "FedYogi", eta=0.5, tau=1e-6)
    assert settings(strategy) == (0.5, 0.0316, 0.9, 0.99, 1e-6)
    assert strategy.optimizer.eta == 0.5


@pytest.mark.parametrize("api", ["message", "legacy"])
def test_fedadagrad_refuses_betas(api: str) -> None:
    with pytest.raises(TypeError, match="FedAdagrad takes no beta_1 or beta_2"):
        build(api, "FedAdagrad", beta_1=0.5)
