"""Message-API `Strategy.start`: checkpoints each round, resumes, applies the failure policy.

Four SuperNode agents (a deterministic ClientApp) over the memory transport and the
runner's `run_serverapp`; the ServerApp "dies" at round 3 (its strategy raises), and
`run_serverapp(resume=...)` continues from the checkpoint of round 2 to the same final
arrays, bit for bit, with a strategy that keeps state across rounds (FedAdam's moments)
and seeded node sampling. The failure policy is the run config's, as in DefaultWorkflow.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from stamen.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from stamen.clientapp import ClientApp
from stamen.common.errors import InvalidMessageError, ServerAppError
from stamen.common.run import RunStatus
from stamen.runner.runner import run_serverapp
from stamen.serverapp import Grid, ServerApp
from stamen.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    FedAdam,
    FedAvg,
    Result,
)
from stamen.serverapp.strategy._checkpoint import decode_start_state, encode_start_state
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.supernode.agent import SuperNodeAgent
from stamen.supernode.executor import ThreadExecutor
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo

pytestmark = pytest.mark.timeout(60)

ROUNDS = 4

client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    if partition == int(context.run_config.get("broken-partition", -1)):
        raise RuntimeError(f"partition {partition} is broken (test)")
    step = np.float32(0.1) * np.float32(partition + 1) / np.float32(3)
    arrays = {k: a.numpy() * np.float32(0.9) + step for k, a in msg.content["arrays"].items()}
    metrics = MetricRecord({"loss": float(partition), "num-examples": 7 + partition})
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}), reply_to=msg)


@client.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    total = float(sum(float(a.numpy().sum()) for a in msg.content["arrays"].values()))
    metrics = MetricRecord({"total": total, "num-examples": 5})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


class Crash(Exception):
    """The ServerApp dies here."""


class Recorded(FedAdam):
    """FedAdam (state across rounds) over half the nodes (seeded sampling)."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__(fraction_train=0.5, min_available_nodes=4, eta=0.05)
        self.crash_at = crash_at
        self.rounds: list[int] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round == self.crash_at:
            raise Crash(f"ServerApp died at round {server_round}")
        self.rounds.append(server_round)
        return super().configure_train(server_round, arrays, config, grid)


def server_app(strategy: FedAvg, results: list[Result]) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        random.seed(int(context.run_config["seed"]))
        initial = ArrayRecord([np.linspace(0, 1, 7, dtype=np.float32)])
        results.append(strategy.start(grid=grid, initial_arrays=initial, num_rounds=ROUNDS))

    return app


@asynccontextmanager
async def nodes(link: SuperLink) -> AsyncIterator[None]:
    fleet = MemoryFleet(link.fleet)
    agents = [SuperNodeAgent(fleet, ThreadExecutor(client), {"partition-id": p}) for p in range(4)]
    async with asyncio.TaskGroup() as tg:
        readies = [asyncio.Event() for _ in agents]
        for agent, ready in zip(agents, readies, strict=True):
            tg.create_task(agent.run(ready))
        for ready in readies:
            await ready.wait()
        try:
            yield
        finally:
            for agent in agents:
                agent.stop()


async def drive(
    link: SuperLink, strategy: FedAvg, run_config: dict[str, Any] | None = None, **kwargs: Any
) -> Result:
    results: list[Result] = []
    await run_serverapp(
        MemoryServerAppIo(link.serverappio),
        server_app(strategy, results),
        server_app_ref="server:app",
        run_config={"seed": 3, **(run_config or {})},
        **kwargs,
    )
    (result,) = results
    return result


def raw(arrays: ArrayRecord) -> list[bytes]:
    return [array.numpy().tobytes() for array in arrays.values()]


async def test_a_resumed_start_ends_with_the_uninterrupted_runs_arrays_bit_for_bit() -> None:
    async with open_superlink(":memory:") as link, nodes(link):
        whole = Recorded()
        whole_result = await drive(link, whole)

        crashed = Recorded(crash_at=3)
        with pytest.raises(ServerAppError, match="ServerApp died at round 3") as raised:
            await drive(link, crashed)
        old = await link.serverappio.get_run(raised.value.run_id)
        assert (old.status, old.sub_status) == (RunStatus.FINISHED, RunStatus.FAILED)

        resumed = Recorded()
        result = await drive(link, resumed, resume=old.run_id)
    assert (whole.rounds, crashed.rounds, resumed.rounds) == ([1, 2, 3, 4], [1, 2], [3, 4])
    assert raw(result.arrays) == raw(whole_result.arrays)
    assert result.train_metrics_clientapp == whole_result.train_metrics_clientapp
    assert result.evaluate_metrics_clientapp == whole_result.evaluate_metrics_clientapp
    assert sorted(result.train_metrics_clientapp) == [1, 2, 3, 4]


def test_the_checkpoint_keeps_metrics_arrays_the_sampler_and_the_strategys_state() -> None:
    result = Result(
        arrays=ArrayRecord([np.arange(3, dtype=np.float32)]),
        train_metrics_clientapp={1: MetricRecord({"loss": 0.5, "n": [1, 2]})},
        evaluate_metrics_serverapp={0: MetricRecord({"acc": float("nan")})},
    )
    strategy = RecordDict({"m_t": ArrayRecord([np.ones(3)])})
    random.seed(11)
    record = encode_start_state(2, result.arrays, result, strategy)
    expected = [random.random() for _ in range(3)]
    random.seed(12)
    state = decode_start_state(record)
    assert [random.random() for _ in range(3)] == expected
    assert state.server_round == 2
    assert raw(state.result.arrays) == raw(result.arrays)
    assert state.result.train_metrics_clientapp == result.train_metrics_clientapp
    assert np.isnan(state.result.evaluate_metrics_serverapp[0]["acc"])  # type: ignore[arg-type]
    assert raw(state.strategy.array_records["m_t"]) == raw(strategy.array_records["m_t"])
    with pytest.raises(InvalidMessageError, match="checkpoint cannot be read"):
        decode_start_state(RecordDict({"model": result.arrays}))


def test_a_strategy_without_state_refuses_a_checkpoint_with_some() -> None:
    with pytest.raises(InvalidMessageError, match="does not keep"):
        FedAvg()._restore_state(RecordDict({"m_t": ArrayRecord()}))


async def test_starts_failure_policy_is_the_run_configs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_superlink(":memory:") as link, nodes(link):
        with caplog.at_level(logging.WARNING, logger="stamen.serverapp"):
            tolerant = await drive(link, FedAvg(min_available_nodes=4), {"broken-partition": 1})
        assert sorted(tolerant.train_metrics_clientapp) == [1, 2, 3, 4]
        # The round table counts them; failure lines name the node by its node_config.
        history = await run_serverapp(
            MemoryServerAppIo(link.serverappio),
            server_app(FedAvg(min_available_nodes=4), []),
            server_app_ref="server:app",
            run_config={"seed": 3, "broken-partition": 1},
        )
        assert history.failures == [(1, 1), (2, 1), (3, 1), (4, 1)]
        assert re.search(r"round 1 train failure: node \d+ \(partition-id=1\): ", caplog.text)
        strict = {"broken-partition": 1, "max-failure-rate": 0.2}
        with pytest.raises(ServerAppError, match=r"over max-failure-rate 0\.2") as raised:
            await drive(link, FedAvg(min_available_nodes=4), strict)
        run = await link.serverappio.get_run(raised.value.run_id)
        assert "round 1 (train)" in run.details
        assert "partition 1 is broken" in run.details


def test_a_dp_wrapper_checkpoints_its_clipping_noise_and_wrapped_strategy() -> None:
    def wrapper() -> DifferentialPrivacyServerSideAdaptiveClipping:
        return DifferentialPrivacyServerSideAdaptiveClipping(
            FedAdam(), noise_multiplier=0.1, num_sampled_clients=4, seed=7
        )

    saved = wrapper()
    saved.clipping_norm = 0.37
    saved.rng.random(5)  # the generator moved on
    inner = saved.strategy
    assert isinstance(inner, FedAdam)
    assert inner.optimizer is not None
    inner.optimizer.m_t = [np.full(3, 0.5)]
    inner.optimizer.v_t = [np.full(3, 0.25)]
    state = saved._checkpoint_state()

    restored = wrapper()
    restored._restore_state(state)
    assert restored.clipping_norm == 0.37
    assert restored.rng.random() == saved.rng.random()
    assert isinstance(restored.strategy, FedAdam)
    assert restored.strategy.optimizer is not None
    assert restored.strategy.optimizer.m_t is not None
    assert restored.strategy.optimizer.m_t[0].tolist() == [0.5, 0.5, 0.5]
