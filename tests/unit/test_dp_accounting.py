"""The fixed-clipping DP wrappers account for their releases as Flower's do.

With an accountant, each round's release is checked against `max_epsilon` when the
instructions go out and composed once the noisy aggregate exists; the spend equals what
the accountant alone gives for the same releases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.app import Context
from stamen.client import ClientApp
from stamen.client.mod import fixedclipping_mod
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)
from stamen.serverapp.privacy import PrivacyBudgetExhausted
from stamen.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
)

WRAPPERS = [DifferentialPrivacyServerSideFixedClipping, DifferentialPrivacyClientSideFixedClipping]


def clip_when_asked(message: Message, context: Context, call_next: Any) -> Message:
    """The mod where the wrapper clips on the clients (it sends a clipping norm)."""
    if "clipping_norm" in message.content["config"]:
        return fixedclipping_mod(message, context, call_next)
    return call_next(message, context)


client = ClientApp(mods=[clip_when_asked])


@client.train()
def train(message: Message, context: Context) -> Message:
    arrays = ArrayRecord({k: a.numpy() + 1.0 for k, a in message.content["arrays"].items()})
    step = int(context.run_config.get("weight-step", 0))
    metrics = MetricRecord({"num-examples": 1 + step * int(context.node_config["partition-id"])})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@client.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=message)


def accountant(**kwargs: float) -> RdpAccountant:
    config = PrivacyConfig(
        1e-5, 100, NeighboringRelation.ADD_OR_REMOVE_ONE, SamplingMethod.NO_AMPLIFICATION, **kwargs
    )
    return RdpAccountant(config)


def run(wrapper: type, dp_accountant: RdpAccountant, rounds: int, **run_config: int) -> object:
    grid = InProcessGrid.with_apps(client, [11, 12], run_config=dict(run_config))
    dp = wrapper(FedAvg(fraction_evaluate=0.0), 1.0, 1.0, 2, accountant=dp_accountant, seed=1)
    dp.start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=rounds)
    return dp


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_each_round_is_one_release_of_the_accountant(wrapper: type) -> None:
    dp = run(wrapper, accountant(), rounds=3)
    alone = accountant()
    alone.compose(GaussianPrivacyEvent(1.0, 2, 100), 3)
    spent = dp.privacy_spent()  # type: ignore[attr-defined]
    assert spent == alone.get_privacy_spent()
    assert spent.num_releases == 3


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_a_round_over_the_budget_is_refused_before_it_starts(wrapper: type) -> None:
    one = accountant()
    one.compose(GaussianPrivacyEvent(1.0, 2, 100))
    two_rounds = accountant()
    two_rounds.compose(GaussianPrivacyEvent(1.0, 2, 100), 2)
    budget = (one.get_epsilon(1e-5) + two_rounds.get_epsilon(1e-5)) / 2
    dp_accountant = accountant(max_epsilon=budget)
    with pytest.raises(PrivacyBudgetExhausted, match="would exceed max_epsilon"):
        run(wrapper, dp_accountant, rounds=3)
    assert dp_accountant.num_releases == 1


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_unequal_weights_are_refused_when_accounting(wrapper: type) -> None:
    with pytest.raises(ValueError, match="equal client weights"):
        run(wrapper, accountant(), rounds=1, **{"weight-step": 1})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda w: w(FedAvg(), 0.0, 1.0, 2, accountant=accountant()),
            "noise multiplier must be positive when accounting",
        ),
        (
            lambda w: w(FedAdam(), 1.0, 1.0, 2, accountant=accountant()),
            "requires a strategy using FedAvg.aggregate_train",
        ),
        (
            lambda w: w(
                FedAvg(),
                1.0,
                1.0,
                2,
                accountant=RdpAccountant(
                    PrivacyConfig(
                        1e-5, 100, NeighboringRelation.ADD_OR_REMOVE_ONE, SamplingMethod.POISSON
                    )
                ),
            ),
            "requires sampling_method='no-amplification'",
        ),
    ],
)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_settings_accounting_cannot_hold_for_are_refused(
    wrapper: type, build: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(wrapper)  # type: ignore[operator]


def test_without_an_accountant_nothing_is_spent() -> None:
    assert DifferentialPrivacyClientSideFixedClipping(FedAvg(), 1.0, 1.0, 2).privacy_spent() is None
