"""The SuperNode agent against the real SuperLink core over the memory transport.

The ServerApp side is played by the test through `link.serverappio`; the node runs a
real ClientApp in a ThreadExecutor. Failures of the link are injected by wrapping the
Fleet API, and a SuperLink that cannot be reached at all is a fake.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from stamen.client import ClientApp, NumPyClient
from stamen.client.task import AppResult, AppTask
from stamen.codec import Envelope, collect_object, decode_message, encode_message, iter_chunks
from stamen.common.backoff import Backoff
from stamen.common.clock import FakeClock
from stamen.common.context import Context
from stamen.common.errors import (
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TransientError,
    UnavailableError,
    WorkerDiedError,
)
from stamen.common.legacy import (
    EvaluateIns,
    FitIns,
    evaluateins_to_recorddict,
    fitins_to_recorddict,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    recorddict_to_evaluateres,
    recorddict_to_fitres,
)
from stamen.common.message import ErrorCode, Message, MessageType
from stamen.common.push import PushResult
from stamen.common.records import MetricRecord, RecordDict, UserConfig
from stamen.common.run import Run, RunStatus
from stamen.superlink.superlink import SuperLink, open_superlink
from stamen.supernode.agent import SuperNodeAgent
from stamen.supernode.executor import ThreadExecutor
from stamen.transport.api import Chunk, FleetApi, ServerAppIoApi
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo
from stamen.transport.types import NodeRegistration

pytestmark = pytest.mark.timeout(20)

FAST = Backoff(initial=0.001, maximum=0.01)


class PlusOne(NumPyClient):
    def fit(self, parameters: Any, config: Any) -> Any:
        context = self.context
        metrics = {"partition": context.node_config["partition-id"], "lr": context.run_config["lr"]}
        return [p + 1 for p in parameters], 10, metrics

    def evaluate(self, parameters: Any, config: Any) -> Any:
        return float(sum(p.sum() for p in parameters)), 5, {}


PLUS_ONE = ClientApp(client_fn=lambda context: PlusOne())


class ServerSide:
    """The ServerApp's half of the conversation, over ServerAppIo."""

    def __init__(self, api: ServerAppIoApi, run_id: int) -> None:
        self.api = api
        self.run_id = run_id

    async def send(
        self, content: RecordDict, node_id: int, message_type: str, ttl: float | None = None
    ) -> str:
        message = Message(content, dst_node_id=node_id, message_type=message_type, ttl=ttl)
        message.metadata.run_id = self.run_id
        envelope, objects = encode_message(message)
        result = await self.api.push_messages(self.run_id, [envelope])
        for object_id in result.missing_object_ids:
            data = objects[object_id]
            await self.api.push_object(
                self.run_id, object_id, memoryview(data).nbytes, _aiter(iter_chunks(data))
            )
        return envelope.message_id

    async def reply(self, message_id: str) -> Message:
        async with asyncio.timeout(10):
            while True:
                replies = await self.api.pull_messages(self.run_id, [message_id], timeout=5)
                if replies:
                    break
        (envelope,) = replies
        objects = {
            oid: await collect_object(oid, self.api.pull_object(self.run_id, oid))
            for oid in envelope.object_ids
        }
        return decode_message(envelope, objects)


async def _aiter(chunks: Any) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


def fit_content(values: Sequence[float]) -> RecordDict:
    parameters = ndarrays_to_parameters([np.asarray(values, dtype=np.float64)])
    return fitins_to_recorddict(FitIns(parameters, {}))


def fitted(reply: Message) -> tuple[list[float], dict[str, Any]]:
    res = recorddict_to_fitres(reply.content)
    return parameters_to_ndarrays(res.parameters)[0].tolist(), dict(res.metrics)


@dataclass
class Link:
    """A SuperLink core and its Fleet and ServerAppIo APIs over the memory transport."""

    core: SuperLink
    fleet: FleetApi
    serverappio: ServerAppIoApi


@asynccontextmanager
async def superlink(heartbeat_interval: float = 5.0) -> AsyncIterator[Link]:
    async with open_superlink(":memory:", heartbeat_interval=heartbeat_interval) as core:
        yield Link(core, MemoryFleet(core.fleet), MemoryServerAppIo(core.serverappio))


async def start_run(link: Link, run_config: UserConfig | None = None) -> ServerSide:
    run_id = await link.serverappio.create_run("server:app", "client:app", run_config or {})
    await link.serverappio.update_run_status(run_id, RunStatus.RUNNING)
    return ServerSide(link.serverappio, run_id)


@asynccontextmanager
async def running(agent: SuperNodeAgent) -> AsyncIterator[SuperNodeAgent]:
    """The agent serving in the background; stopped (and awaited) on exit."""
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(agent.run(ready))
        ready_wait = tg.create_task(ready.wait())
        await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready_wait.cancel()
            task.result()
        try:
            yield agent
        finally:
            agent.stop()


def node_id_of(agent: SuperNodeAgent) -> int:
    assert agent.node_id is not None
    return agent.node_id


class Wrapped:
    """A FleetApi that passes calls to `inner`, counting them; `hooks` may fail a call."""

    def __init__(self, inner: FleetApi) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.pulled_objects: Counter[str] = Counter()
        self.hooks: dict[str, Callable[[], Awaitable[None]]] = {}

    def polling(self) -> asyncio.Event:
        """An event set once the node enters a long-poll (a `pull_messages` call)."""
        started = asyncio.Event()

        async def poll_started() -> None:
            started.set()

        self.hooks["pull_messages"] = poll_started
        return started

    async def _enter(self, name: str) -> None:
        self.calls[name] += 1
        hook = self.hooks.get(name)
        if hook is not None:
            await hook()

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        await self._enter("register_node")
        return await self.inner.register_node(node_config)

    async def unregister_node(self, node_id: int) -> None:
        await self._enter("unregister_node")
        await self.inner.unregister_node(node_id)

    async def heartbeat(self, node_id: int) -> float:
        await self._enter("heartbeat")
        return await self.inner.heartbeat(node_id)

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        await self._enter("pull_messages")
        return await self.inner.pull_messages(node_id, timeout)

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        await self._enter("push_messages")
        return await self.inner.push_messages(node_id, envelopes)

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Chunk]
    ) -> bool:
        await self._enter("push_object")
        return await self.inner.push_object(node_id, object_id, total_size, chunks)

    async def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Chunk]:
        await self._enter("pull_object")
        self.pulled_objects[object_id] += 1
        async for chunk in self.inner.pull_object(node_id, object_id):
            yield chunk

    async def get_run(self, node_id: int, run_id: int) -> Run:
        await self._enter("get_run")
        return await self.inner.get_run(node_id, run_id)


class Registrations(Wrapped):
    """Also queues each node id the SuperLink hands out."""

    def __init__(self, inner: FleetApi) -> None:
        super().__init__(inner)
        self.registered: asyncio.Queue[int] = asyncio.Queue()

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        registration = await super().register_node(node_config)
        self.registered.put_nowait(registration.node_id)
        return registration


def fail_times(count: int, error: Exception) -> Callable[[], Awaitable[None]]:
    remaining = [count]

    async def hook() -> None:
        if remaining[0] > 0:
            remaining[0] -= 1
            raise error

    return hook


async def test_agent_answers_a_train_instruction_with_the_apps_reply() -> None:
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.5})
        agent = SuperNodeAgent(
            link.fleet, ThreadExecutor(PLUS_ONE), {"partition-id": 3}, backoff=FAST
        )
        async with running(agent):
            node_id = node_id_of(agent)
            message_id = await server.send(fit_content([1, 2]), node_id, "train")
            reply = await server.reply(message_id)
        assert reply.metadata.reply_to_message_id == message_id
        assert reply.metadata.src_node_id == node_id
        values, metrics = fitted(reply)
        assert values == [2.0, 3.0]
        assert metrics == {"partition": 3, "lr": 0.5}


async def test_a_model_sent_for_train_and_evaluate_is_fetched_once() -> None:
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.1})
        fleet = Wrapped(link.fleet)
        agent = SuperNodeAgent(fleet, ThreadExecutor(PLUS_ONE), {"partition-id": 0}, backoff=FAST)
        async with running(agent):
            node_id = node_id_of(agent)
            parameters = ndarrays_to_parameters([np.ones(4), np.zeros(2)])
            train = await server.send(
                fitins_to_recorddict(FitIns(parameters, {})), node_id, MessageType.TRAIN
            )
            evaluate = await server.send(
                evaluateins_to_recorddict(EvaluateIns(parameters, {})),
                node_id,
                MessageType.EVALUATE,
            )
            trained = await server.reply(train)
            evaluated = await server.reply(evaluate)
        assert fitted(trained)[0] == [2.0, 2.0, 2.0, 2.0]
        assert recorddict_to_evaluateres(evaluated.content).loss == 4.0
        assert len(fleet.pulled_objects) == 2
        assert set(fleet.pulled_objects.values()) == {1}
        assert fleet.calls["get_run"] == 1  # once per run


async def test_context_state_persists_across_rounds() -> None:
    app = ClientApp()

    @app.train()
    def count(message: Message, context: Context) -> Message:
        record = context.state.get("rounds")
        seen = record["count"] if isinstance(record, MetricRecord) else 0
        assert isinstance(seen, int)
        context.state["rounds"] = MetricRecord({"count": seen + 1})
        return message.create_reply(RecordDict({"m": MetricRecord({"count": seen + 1})}))

    async with superlink() as link:
        server = await start_run(link)
        agent = SuperNodeAgent(link.fleet, ThreadExecutor(app), {}, backoff=FAST)
        counts = []
        async with running(agent):
            for _ in range(3):
                message_id = await server.send(RecordDict(), node_id_of(agent), "train")
                reply = await server.reply(message_id)
                counts.append(reply.content["m"]["count"])  # type: ignore[index]
        assert counts == [1, 2, 3]


async def test_agent_registers_again_when_the_superlink_forgets_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.1})
        fleet = Registrations(link.fleet)
        agent = SuperNodeAgent(
            fleet, ThreadExecutor(PLUS_ONE), {"partition-id": 1}, backoff=FAST, pull_timeout=0.2
        )
        async with running(agent):
            first = await fleet.registered.get()
            await link.fleet.unregister_node(first)  # the SuperLink forgets the node
            second = await fleet.registered.get()
            assert second != first
            message_id = await server.send(fit_content([0]), second, "train")
            reply = await server.reply(message_id)
        assert fitted(reply)[0] == [1.0]
        assert "no longer knows this node" in caplog.text


async def test_a_reply_that_could_not_be_pushed_is_pushed_after_reconnecting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stamen.supernode")
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.1})
        fleet = Wrapped(link.fleet)
        fleet.hooks["push_messages"] = fail_times(2, UnavailableError("connection lost (test)"))
        agent = SuperNodeAgent(fleet, ThreadExecutor(PLUS_ONE), {"partition-id": 2}, backoff=FAST)
        async with running(agent):
            message_id = await server.send(fit_content([5]), node_id_of(agent), "train")
            reply = await server.reply(message_id)
        assert fitted(reply)[0] == [6.0]
        assert fleet.calls["push_messages"] == 3
        assert "lost the connection to the SuperLink: connection lost (test)" in caplog.text
        assert "reconnected to the SuperLink" in caplog.text


class Redelivering(Wrapped):
    """Hands the first instruction it sees out twice, as a restarted SuperLink may."""

    def __init__(self, inner: FleetApi) -> None:
        super().__init__(inner)
        self.again: list[Envelope] = []
        self.done = False

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        if self.again:
            again, self.again = self.again, []
            return again
        envelopes = await super().pull_messages(node_id, timeout)
        if envelopes and not self.done:
            self.again, self.done = list(envelopes), True
        return envelopes


class CountingExecutor(ThreadExecutor):
    runs = 0

    async def execute(self, task: AppTask) -> AppResult:
        self.runs += 1
        return await super().execute(task)


async def test_an_instruction_delivered_twice_is_answered_once() -> None:
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.1})
        fleet = Redelivering(link.fleet)
        executor = CountingExecutor(PLUS_ONE)
        agent = SuperNodeAgent(fleet, executor, {"partition-id": 0}, backoff=FAST)
        async with running(agent):
            first = await server.send(fit_content([1]), node_id_of(agent), "train")
            assert fitted(await server.reply(first))[0] == [2.0]
            second = await server.send(fit_content([5]), node_id_of(agent), "train")
            assert fitted(await server.reply(second))[0] == [6.0]
        assert fleet.done
        assert executor.runs == 2


class DiesExecutor:
    async def execute(self, task: AppTask) -> AppResult:
        raise WorkerDiedError("pid 4242 was killed by SIGKILL (test)")

    async def aclose(self) -> None:
        pass


async def test_a_dead_worker_becomes_an_error_reply_and_the_node_keeps_serving() -> None:
    async with superlink() as link:
        server = await start_run(link)
        agent = SuperNodeAgent(link.fleet, DiesExecutor(), {}, backoff=FAST)
        async with running(agent):
            first = await server.send(fit_content([1]), node_id_of(agent), "train")
            second = await server.send(fit_content([1]), node_id_of(agent), "train")
            replies = [await server.reply(first), await server.reply(second)]
        for reply in replies:
            assert reply.has_error()
            assert reply.error.code == ErrorCode.WORKER_DIED
            assert "killed by SIGKILL (test)" in reply.error.reason


class BlockingExecutor:
    """Runs forever (until cancelled); says when a task has started."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def execute(self, task: AppTask) -> AppResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


async def test_stop_answers_the_task_in_hand_after_the_grace_period_and_unregisters() -> None:
    async with superlink() as link:
        server = await start_run(link)
        executor = BlockingExecutor()
        agent = SuperNodeAgent(link.fleet, executor, {}, backoff=FAST, grace_period=0.05)
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(agent.run(ready))
            await ready.wait()
            node_id = node_id_of(agent)
            message_id = await server.send(fit_content([1]), node_id, "train")
            await executor.started.wait()
            agent.stop()
        assert task.result() is None
        reply = await server.reply(message_id)
        assert reply.error.code == ErrorCode.NODE_UNAVAILABLE
        assert "grace period" in reply.error.reason
        with pytest.raises(NotFoundError, match="is not registered"):
            await link.fleet.heartbeat(node_id)


async def test_stop_ends_a_long_poll_at_once() -> None:
    async with superlink() as link:
        fleet = Wrapped(link.fleet)
        polling = fleet.polling()
        agent = SuperNodeAgent(fleet, ThreadExecutor(PLUS_ONE), {}, pull_timeout=60.0)
        async with running(agent):
            await polling.wait()
        assert agent.node_id is None  # unregistered
        assert fleet.calls["unregister_node"] == 1


async def test_an_idle_node_is_one_task_that_a_long_poll_keeps_alive() -> None:
    clock = FakeClock()
    async with open_superlink(":memory:", heartbeat_interval=1.0, clock=clock) as core:
        link = Link(core, MemoryFleet(core.fleet), MemoryServerAppIo(core.serverappio))
        server = await start_run(link)
        fleet = Wrapped(link.fleet)
        polling = fleet.polling()
        agent = SuperNodeAgent(fleet, ThreadExecutor(PLUS_ONE), {}, pull_timeout=60.0)
        others = asyncio.all_tasks()
        async with running(agent):
            await polling.wait()  # set as the node enters the SuperLink's long poll
            assert len(asyncio.all_tasks() - others) == 1  # no heartbeat task of its own
            clock.advance(100.0)  # a hundred heartbeat intervals
            core.sweep()
            online = await link.serverappio.get_nodes(server.run_id)
            assert [node.node_id for node in online] == [node_id_of(agent)]
        assert fleet.calls["heartbeat"] == 0


async def test_heartbeats_go_on_while_the_app_runs_and_end_with_it() -> None:
    async with superlink(heartbeat_interval=0.1) as link:
        server = await start_run(link, {"lr": 0.1})
        fleet = Wrapped(link.fleet)
        beats = asyncio.Event()
        polls: asyncio.Queue[None] = asyncio.Queue()

        async def count_beats() -> None:
            if fleet.calls["heartbeat"] >= 3:
                beats.set()

        async def count_polls() -> None:
            polls.put_nowait(None)

        fleet.hooks["heartbeat"] = count_beats
        fleet.hooks["pull_messages"] = count_polls

        class WaitsForHeartbeats:
            async def execute(self, task: AppTask) -> AppResult:
                await beats.wait()  # a long task: it ends only once heartbeats flowed
                return await ThreadExecutor(PLUS_ONE).execute(task)

            async def aclose(self) -> None:
                pass

        agent = SuperNodeAgent(fleet, WaitsForHeartbeats(), {"partition-id": 0}, backoff=FAST)
        others = asyncio.all_tasks()
        async with running(agent):
            message_id = await server.send(fit_content([1]), node_id_of(agent), "train")
            reply = await server.reply(message_id)
            await polls.get()  # the poll that brought the message
            await polls.get()  # the next one, after the reply
            assert len(asyncio.all_tasks() - others) == 1  # the heartbeat task ended
        assert reply.has_content()


class Unreachable:
    """A FleetApi whose SuperLink never answers."""

    def __init__(self) -> None:
        self.attempts = 0
        self.attempted = asyncio.Event()

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        self.attempts += 1
        self.attempted.set()
        raise UnavailableError("cannot reach the SuperLink at 127.0.0.1:1: connection refused")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called before registering")


async def test_agent_gives_up_after_max_retries_with_a_clear_error() -> None:
    fleet = Unreachable()
    agent = SuperNodeAgent(
        fleet,
        ThreadExecutor(PLUS_ONE),
        {},
        max_retries=3,
        backoff=FAST,
        rng=random.Random(0),
    )
    ready = asyncio.Event()
    with pytest.raises(UnavailableError) as caught:
        await agent.run(ready)
    assert fleet.attempts == 4
    assert not ready.is_set()
    assert str(caught.value).startswith("gave up reaching the SuperLink after 3 retries")
    assert str(caught.value).endswith("connection refused")


async def test_agent_gives_up_after_max_wait_time() -> None:
    fleet = Unreachable()
    agent = SuperNodeAgent(
        fleet,
        ThreadExecutor(PLUS_ONE),
        {},
        max_wait_time=0.05,
        backoff=FAST,
    )
    with pytest.raises(UnavailableError, match="gave up reaching the SuperLink"):
        await agent.run()
    assert fleet.attempts > 1


async def test_stop_while_retrying_returns_without_error() -> None:
    fleet = Unreachable()
    agent = SuperNodeAgent(
        fleet,
        ThreadExecutor(PLUS_ONE),
        {},
        backoff=Backoff(initial=30.0, maximum=30.0),
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(agent.run())
        await fleet.attempted.wait()
        agent.stop()
    assert task.result() is None
    assert fleet.attempts == 1


def fail_with(*errors: Exception) -> Callable[[], Awaitable[None]]:
    """A hook that raises `errors` one per call, then lets calls through."""
    remaining = list(errors)

    async def hook() -> None:
        if remaining:
            raise remaining.pop(0)

    return hook


async def test_every_transient_server_error_is_retried_and_one_outage_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="stamen.supernode")
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.1})
        fleet = Wrapped(link.fleet)
        fleet.hooks["pull_messages"] = fail_with(
            TransientError("internal error in Fleet.PullMessages"),
            ResourceExhaustedError("SuperLink storage is full: (test)"),
            UnavailableError("the SuperLink did not answer (test)"),
        )
        fleet.hooks["push_messages"] = fail_with(TransientError("internal error (test)"))
        agent = SuperNodeAgent(fleet, ThreadExecutor(PLUS_ONE), {"partition-id": 2}, backoff=FAST)
        async with running(agent):
            message_id = await server.send(fit_content([5]), node_id_of(agent), "train")
            reply = await server.reply(message_id)
        assert fitted(reply)[0] == [6.0]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    outages = [r.getMessage() for r in warnings if "the SuperLink" in r.getMessage()]
    assert outages == [
        "lost the connection to the SuperLink: internal error in Fleet.PullMessages",
        "lost the connection to the SuperLink: internal error (test)",
    ]
    assert caplog.text.count("reconnected to the SuperLink") == 2


async def test_a_refused_credential_ends_the_node_without_retrying() -> None:
    async with superlink() as link:
        fleet = Wrapped(link.fleet)
        fleet.hooks["pull_messages"] = fail_with(PermissionDeniedError("node key not trusted"))
        agent = SuperNodeAgent(fleet, ThreadExecutor(PLUS_ONE), {}, backoff=FAST)
        with pytest.raises(PermissionDeniedError, match="node key not trusted"):
            await agent.run()
        assert fleet.calls["pull_messages"] == 1


class HangsOnce(ThreadExecutor):
    """Its first task never finishes on its own; it notes being cancelled."""

    def __init__(self) -> None:
        super().__init__(PLUS_ONE)
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute(self, task: AppTask) -> AppResult:
        if not self.started.is_set():
            self.started.set()
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return await super().execute(task)


async def test_a_task_whose_instruction_expired_is_cancelled_and_the_node_pulls_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("stamen.supernode.agent.EXPIRY_SLACK", 0.0)
    async with superlink() as link:
        server = await start_run(link, {"lr": 0.1})
        executor = HangsOnce()
        agent = SuperNodeAgent(link.fleet, executor, {"partition-id": 1}, backoff=FAST)
        async with running(agent):
            await server.send(fit_content([1]), node_id_of(agent), "train", ttl=0.3)
            await asyncio.wait_for(executor.cancelled.wait(), 10)
            message_id = await server.send(fit_content([5]), node_id_of(agent), "train")
            reply = await server.reply(message_id)
        assert fitted(reply)[0] == [6.0]
    assert "cancelled the ClientApp's task: its message expired (TTL 0.3s)" in caplog.text


async def test_a_task_whose_run_stopped_is_cancelled_and_the_node_pulls_again() -> None:
    async with superlink(heartbeat_interval=0.1) as link:
        stopped = await start_run(link, {"lr": 0.1})
        executor = HangsOnce()
        agent = SuperNodeAgent(link.fleet, executor, {"partition-id": 1}, backoff=FAST)
        async with running(agent):
            await stopped.send(fit_content([1]), node_id_of(agent), "train")
            await asyncio.wait_for(executor.started.wait(), 10)
            await link.serverappio.update_run_status(
                stopped.run_id, RunStatus.FINISHED, RunStatus.STOPPED
            )
            await asyncio.wait_for(executor.cancelled.wait(), 10)
            server = await start_run(link, {"lr": 0.1})
            message_id = await server.send(fit_content([5]), node_id_of(agent), "train")
            reply = await server.reply(message_id)
        assert fitted(reply)[0] == [6.0]
