"""A run resumes from its last completed round and ends with the same model, bit for bit.

Four SuperNode agents (a deterministic NumPyClient) over the memory transport; the runner
"dies" at round 3 (its strategy raises), and `run_serverapp(resume=...)` continues from
the checkpoint of round 2. The SuperLink's side of checkpoints is tested directly too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from stamen.client import ClientApp, NumPyClient
from stamen.codec import encode_message, iter_chunks
from stamen.common.errors import InvalidMessageError, ServerAppError
from stamen.common.legacy import ndarrays_to_parameters, parameters_to_ndarrays
from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, RecordDict
from stamen.common.run import RunStatus
from stamen.runner.runner import run_serverapp
from stamen.server import History, ServerApp, ServerConfig
from stamen.server.strategy import FedAvg
from stamen.superlink import MemoryLinkState
from stamen.superlink.objectstore import MemoryObjectStore
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.supernode.agent import SuperNodeAgent
from stamen.supernode.executor import ThreadExecutor
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo
from stamen.transport.types import CHECKPOINT_PREFIX

pytestmark = pytest.mark.timeout(60)

ROUNDS = 4


class Step(NumPyClient):
    """Moves the model by an amount of its own, in float32, so sums round."""

    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters: Any, config: Any) -> Any:
        step = np.float32(0.1) * np.float32(self.partition + 1) / np.float32(3)
        return [p * np.float32(0.9) + step for p in parameters], 7 + self.partition, {}

    def evaluate(self, parameters: Any, config: Any) -> Any:
        return float(sum(float(p.sum()) for p in parameters)), 5, {"p": self.partition}


CLIENT = ClientApp(
    client_fn=lambda context: Step(int(context.node_config["partition-id"])).to_client()
)


class Crash(Exception):
    """The runner dies here."""


class Recorded(FedAvg):
    def __init__(self, crash_at: int | None = None) -> None:
        initial = ndarrays_to_parameters([np.linspace(0, 1, 7, dtype=np.float32)])
        super().__init__(
            fraction_fit=0.5, min_fit_clients=2, min_available_clients=4, initial_parameters=initial
        )
        self.crash_at = crash_at
        self.final: list[np.ndarray] = []
        self.rounds: list[int] = []

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        if server_round == self.crash_at:
            raise Crash(f"runner died at round {server_round}")
        self.rounds.append(server_round)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        self.final = parameters_to_ndarrays(parameters)
        return parameters, metrics


def server_app(strategy: FedAvg) -> ServerApp:
    return ServerApp(config=ServerConfig(num_rounds=ROUNDS), strategy=strategy)


@asynccontextmanager
async def nodes(link: SuperLink) -> AsyncIterator[None]:
    fleet = MemoryFleet(link.fleet)
    agents = [SuperNodeAgent(fleet, ThreadExecutor(CLIENT), {"partition-id": p}) for p in range(4)]
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


async def drive(link: SuperLink, strategy: FedAvg, **kwargs: Any) -> History:
    io = MemoryServerAppIo(link.serverappio)
    return await run_serverapp(
        io, server_app(strategy), server_app_ref="server:app", run_config={"seed": 3}, **kwargs
    )


async def test_a_resumed_run_ends_with_the_uninterrupted_runs_model_bit_for_bit() -> None:
    async with open_superlink(":memory:") as link, nodes(link):
        whole = Recorded()
        whole_history = await drive(link, whole)

        crashed = Recorded(crash_at=3)
        with pytest.raises(ServerAppError, match="runner died at round 3") as raised:
            await drive(link, crashed)
        old = await link.serverappio.get_run(raised.value.run_id)
        assert (old.status, old.sub_status) == (RunStatus.FINISHED, RunStatus.FAILED)

        resumed = Recorded()
        history = await drive(link, resumed, resume=old.run_id)
    assert (whole.rounds, crashed.rounds, resumed.rounds) == ([1, 2, 3, 4], [1, 2], [3, 4])
    assert [a.tobytes() for a in resumed.final] == [a.tobytes() for a in whole.final]
    assert history.losses_distributed == whole_history.losses_distributed
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3, 4]
    assert history.metrics_distributed == whole_history.metrics_distributed


def checkpoint(run_id: int, values: list[float]) -> tuple[Any, dict[str, Any]]:
    content = RecordDict({"model": ArrayRecord([np.asarray(values, dtype=np.float64)])})
    message = Message(content, dst_node_id=0, message_type=MessageType.QUERY)
    message.metadata.run_id = run_id
    message.metadata.message_id = CHECKPOINT_PREFIX + message.metadata.message_id
    return encode_message(message)


async def push(io: MemoryServerAppIo, run_id: int, values: list[float]) -> str:
    envelope, objects = checkpoint(run_id, values)
    result = await io.push_checkpoint(run_id, envelope)
    for oid in result.missing_object_ids:
        data = objects[oid]

        async def chunks(data: Any = data) -> AsyncIterator[memoryview]:
            for chunk in iter_chunks(data):
                yield chunk

        await io.push_object(run_id, oid, memoryview(data).nbytes, chunks())
    return envelope.message_id


async def test_the_superlink_keeps_the_latest_checkpoint_past_the_runs_end() -> None:
    async with open_superlink(":memory:") as link:
        io = MemoryServerAppIo(link.serverappio)
        run_id = await io.create_run("server:app", "", {})
        await io.update_run_status(run_id, RunStatus.RUNNING)
        assert await io.pull_checkpoint(run_id) == []
        await push(io, run_id, [1.0])
        objects_before = link.store.ids()
        latest = await push(io, run_id, [2.0])
        assert len(link.store.ids()) == len(objects_before)  # the old model's object went
        await io.update_run_status(run_id, RunStatus.FINISHED, RunStatus.FAILED, "died")
        (kept,) = await io.pull_checkpoint(run_id)
        assert kept.message_id == latest
        assert set(kept.object_ids) <= link.store.ids()

        other = await io.create_run("server:app", "", {})
        envelope, _ = checkpoint(run_id, [3.0])
        with pytest.raises(InvalidMessageError, match="not of run"):
            await io.push_checkpoint(other, envelope)


async def test_resume_waits_out_the_lease_of_a_runner_that_died(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("stamen.runner.runner.LAPSE_SLACK", 0.3)
    link = SuperLink(MemoryLinkState(), MemoryObjectStore(), run_lease=0.5, sweep_interval=0.1)
    async with link, nodes(link):
        io = MemoryServerAppIo(link.serverappio)
        dead = await io.create_run("server:app", "", {"seed": 3})
        await io.renew_run_lease(dead, "a runner that died")
        await io.update_run_status(dead, RunStatus.RUNNING)

        strategy = Recorded()
        history = await drive(link, strategy, resume=dead)
        old = await io.get_run(dead)
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3, 4]
    assert (old.sub_status, "stopped responding" in old.details) == (RunStatus.FAILED, True)
    assert "another runner holds its lease (it may have died)" in caplog.text
