"""The SuperLink's Prometheus metrics: what it serves on `/metrics` (`--metrics-address`).

Counted where the work is observed, never inside the rules (`core`): the Fleet and
ServerAppIo handlers are wrapped (`InstrumentedFleet`, `InstrumentedServerAppIo`) to
time each call and count messages and object bytes, and the router reports error
replies and missed heartbeats through `RouterEvents`. What is a state (nodes, runs,
stored objects) is read from the SuperLink when Prometheus scrapes, not kept twice.

    stamen_superlink_nodes_registered, stamen_superlink_nodes_online
    stamen_superlink_runs{status}                      pending, running, completed, ...
    stamen_superlink_messages_pushed_total{api}        fleet (replies), serverappio
    stamen_superlink_messages_pulled_total{api}
    stamen_superlink_messages_expired_total            instructions past their TTL
    stamen_superlink_messages_failed_total             error replies for nodes gone
    stamen_superlink_received_bytes_total, stamen_superlink_sent_bytes_total (objects)
    stamen_superlink_objects                           objects in the store
    stamen_superlink_rpc_duration_seconds{method}      histogram, e.g. Fleet.PullMessages
    stamen_superlink_round_duration_seconds            histogram of reported rounds
    stamen_superlink_heartbeat_misses_total            nodes that went offline
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from stamen.codec.envelope import Envelope
from stamen.common.message import ErrorCode
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus
from stamen.transport.api import Chunk, FleetApi, ServerAppIoApi
from stamen.transport.types import NodeRegistration

from .router import RouterEvents
from .superlink import SuperLink

__all__ = ["InstrumentedFleet", "InstrumentedServerAppIo", "SuperLinkMetrics"]

_RPC_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0)
_ROUND_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class SuperLinkMetrics(RouterEvents):
    """The metrics of one SuperLink, in a registry of their own; `tasks_by_node` counts
    the replies each node pushed (the dashboard's "tasks served")."""

    def __init__(self, link: SuperLink) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks_by_node: Tally[int] = Tally()
        r = self.registry
        self.pushed = Counter(
            "stamen_superlink_messages_pushed", "Messages pushed to the SuperLink.", ["api"],
            registry=r,
        )  # fmt: skip
        self.pulled = Counter(
            "stamen_superlink_messages_pulled", "Messages handed out by the SuperLink.", ["api"],
            registry=r,
        )  # fmt: skip
        self.expired = Counter(
            "stamen_superlink_messages_expired",
            "Instructions that got no reply within their TTL.",
            registry=r,
        )
        self.failed = Counter(
            "stamen_superlink_messages_failed",
            "Instructions answered with an error because their node went away.",
            registry=r,
        )
        self.received = Counter(
            "stamen_superlink_received_bytes", "Object bytes pushed to the SuperLink.", registry=r
        )
        self.sent = Counter(
            "stamen_superlink_sent_bytes", "Object bytes pulled from the SuperLink.", registry=r
        )
        self.rpc = Histogram(
            "stamen_superlink_rpc_duration_seconds",
            "Time to serve a call, by API method (pulls include their long-poll wait).",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self.rounds = Histogram(
            "stamen_superlink_round_duration_seconds",
            "Duration of the rounds that runs reported.",
            buckets=_ROUND_BUCKETS,
            registry=r,
        )
        self.heartbeat_misses = Counter(
            "stamen_superlink_heartbeat_misses",
            "Nodes that went offline after missing their heartbeat deadline.",
            registry=r,
        )
        r.register(_StateCollector(link))
        self._rpc_children: dict[str, Histogram] = {}
        self.pushed_by = {api: self.pushed.labels(api) for api in ("fleet", "serverappio")}
        self.pulled_by = {api: self.pulled.labels(api) for api in ("fleet", "serverappio")}

    # --- RouterEvents ------------------------------------------------------------------
    def error_replies(self, code: int, count: int) -> None:
        if code == ErrorCode.MESSAGE_EXPIRED:
            self.expired.inc(count)
        else:
            self.failed.inc(count)

    def node_offline(self, node_id: int) -> None:
        self.heartbeat_misses.inc()

    # --- used by the wrappers (hot paths: labelled children are looked up once) ---------
    def timed(self, method: str) -> _Timed:
        """A context manager that records the block's duration as a call of `method`."""
        child = self._rpc_children.get(method)
        if child is None:
            child = self._rpc_children[method] = self.rpc.labels(method)
        return _Timed(child)

    async def counted_in(self, chunks: AsyncIterable[Chunk]) -> AsyncIterator[Chunk]:
        async for chunk in chunks:
            self.received.inc(memoryview(chunk).nbytes)
            yield chunk

    async def counted_out(self, method: str, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        with self.timed(method):
            async with aclosing(chunks) as stream:  # type: ignore[type-var]
                async for chunk in stream:
                    self.sent.inc(memoryview(chunk).nbytes)
                    yield chunk


class _Timed:
    __slots__ = ("_began", "_child")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._began = 0.0

    def __enter__(self) -> None:
        self._began = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self._child.observe(time.perf_counter() - self._began)


class _StateCollector(Collector):
    """Gauges read from the SuperLink's state at scrape time."""

    def __init__(self, link: SuperLink) -> None:
        self._link = link

    def collect(self) -> Iterator[Metric]:
        nodes = self._link.state.list_nodes()
        yield GaugeMetricFamily(
            "stamen_superlink_nodes_registered", "Nodes registered.", value=len(nodes)
        )
        yield GaugeMetricFamily(
            "stamen_superlink_nodes_online",
            "Registered nodes within their heartbeat deadline.",
            value=sum(node.online for node in nodes),
        )
        runs = GaugeMetricFamily(
            "stamen_superlink_runs",
            "Runs by status (a finished run by how it finished).",
            labels=["status"],
        )
        statuses = Tally(run_status(run) for run in self._link.state.list_runs())
        for status in _STATUSES:
            runs.add_metric([status], statuses.get(status, 0))
        yield runs
        yield GaugeMetricFamily(
            "stamen_superlink_objects",
            "Objects in the object store.",
            value=len(self._link.store.ids()),
        )


_STATUSES = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.STOPPED,
)


def run_status(run: Run) -> str:
    """One word for where a run is: pending, running, or how it finished."""
    return run.sub_status if run.status == RunStatus.FINISHED and run.sub_status else run.status


class InstrumentedFleet:
    """`FleetApi` that times and counts each call, then hands it to the real handler."""

    def __init__(self, inner: FleetApi, metrics: SuperLinkMetrics) -> None:
        self._inner = inner
        self._m = metrics

    async def register_node(self, node_config: UserConfig) -> NodeRegistration:
        with self._m.timed("Fleet.RegisterNode"):
            return await self._inner.register_node(node_config)

    async def unregister_node(self, node_id: int) -> None:
        with self._m.timed("Fleet.UnregisterNode"):
            await self._inner.unregister_node(node_id)

    async def heartbeat(self, node_id: int) -> float:
        with self._m.timed("Fleet.Heartbeat"):
            return await self._inner.heartbeat(node_id)

    async def pull_messages(self, node_id: int, timeout: float) -> list[Envelope]:
        with self._m.timed("Fleet.PullMessages"):
            found = await self._inner.pull_messages(node_id, timeout)
        if found:
            self._m.pulled_by["fleet"].inc(len(found))
        return found

    async def push_messages(self, node_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        with self._m.timed("Fleet.PushMessages"):
            result = await self._inner.push_messages(node_id, envelopes)
        self._m.pushed_by["fleet"].inc(len(envelopes))
        self._m.tasks_by_node[node_id] += len(envelopes)
        return result

    async def push_object(
        self, node_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Chunk]
    ) -> bool:
        with self._m.timed("Fleet.PushObject"):
            counted = self._m.counted_in(chunks)
            return await self._inner.push_object(node_id, object_id, total_size, counted)

    def pull_object(self, node_id: int, object_id: str) -> AsyncIterator[Chunk]:
        return self._m.counted_out("Fleet.PullObject", self._inner.pull_object(node_id, object_id))

    async def get_run(self, node_id: int, run_id: int) -> Run:
        with self._m.timed("Fleet.GetRun"):
            return await self._inner.get_run(node_id, run_id)


class InstrumentedServerAppIo:
    """`ServerAppIoApi` that times and counts each call, then hands it to the handler."""

    def __init__(self, inner: ServerAppIoApi, metrics: SuperLinkMetrics) -> None:
        self._inner = inner
        self._m = metrics

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        with self._m.timed("ServerAppIo.CreateRun"):
            return await self._inner.create_run(server_app, client_app, run_config)

    async def get_run(self, run_id: int) -> Run:
        with self._m.timed("ServerAppIo.GetRun"):
            return await self._inner.get_run(run_id)

    async def get_nodes(self, run_id: int) -> list[Node]:
        with self._m.timed("ServerAppIo.GetNodes"):
            return await self._inner.get_nodes(run_id)

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        with self._m.timed("ServerAppIo.PushMessages"):
            result = await self._inner.push_messages(run_id, envelopes)
        self._m.pushed_by["serverappio"].inc(len(envelopes))
        return result

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        with self._m.timed("ServerAppIo.PullMessages"):
            found = await self._inner.pull_messages(run_id, message_ids, timeout)
        if found:
            self._m.pulled_by["serverappio"].inc(len(found))
        return found

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Chunk]
    ) -> bool:
        with self._m.timed("ServerAppIo.PushObject"):
            counted = self._m.counted_in(chunks)
            return await self._inner.push_object(run_id, object_id, total_size, counted)

    def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Chunk]:
        method = "ServerAppIo.PullObject"
        return self._m.counted_out(method, self._inner.pull_object(run_id, object_id))

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        with self._m.timed("ServerAppIo.UpdateRunStatus"):
            await self._inner.update_run_status(run_id, status, sub_status, details)

    async def report_round(
        self, run_id: int, server_round: int, seconds: float, metrics: Mapping[str, float]
    ) -> None:
        with self._m.timed("ServerAppIo.ReportRound"):
            await self._inner.report_round(run_id, server_round, seconds, metrics)
        if seconds > 0:
            self._m.rounds.observe(seconds)

    async def renew_run_lease(self, run_id: int, holder: str) -> float:
        with self._m.timed("ServerAppIo.RenewRunLease"):
            return await self._inner.renew_run_lease(run_id, holder)

    async def push_checkpoint(self, run_id: int, envelope: Envelope) -> PushResult:
        with self._m.timed("ServerAppIo.PushCheckpoint"):
            return await self._inner.push_checkpoint(run_id, envelope)

    async def pull_checkpoint(self, run_id: int) -> list[Envelope]:
        with self._m.timed("ServerAppIo.PullCheckpoint"):
            return await self._inner.pull_checkpoint(run_id)
