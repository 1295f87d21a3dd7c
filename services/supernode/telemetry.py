"""The SuperNode's Prometheus metrics (`--metrics-address`): the ClientApp tasks it ran.

`InstrumentedExecutor` wraps the node's `AppExecutor`, so the agent is not changed:

    stamen_supernode_tasks_total               tasks run (replies produced)
    stamen_supernode_tasks_failed_total        of those, error replies or executor errors
    stamen_supernode_task_duration_seconds     histogram, decoding to encoded reply
    stamen_supernode_worker_restarts_total     worker processes that died and were replaced
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from stamen.client.task import AppExecutor, AppResult, AppTask
from stamen.codec import decode_message
from stamen.common.errors import StamenError, WorkerDiedError

__all__ = ["InstrumentedExecutor", "SuperNodeMetrics"]

_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class SuperNodeMetrics:
    """The metrics of one SuperNode, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks = Counter("stamen_supernode_tasks", "ClientApp tasks run.", registry=r)
        self.failed = Counter(
            "stamen_supernode_tasks_failed",
            "Tasks that ended in an error reply (the app raised, its worker died, ...).",
            registry=r,
        )
        self.duration = Histogram(
            "stamen_supernode_task_duration_seconds",
            "Time to run one task in the ClientApp's worker.",
            buckets=_TASK_BUCKETS,
            registry=r,
        )
        self.restarts = Counter(
            "stamen_supernode_worker_restarts",
            "ClientApp worker processes that died and were replaced.",
            registry=r,
        )


class InstrumentedExecutor:
    """An `AppExecutor` that counts and times the tasks of the one it wraps."""

    def __init__(self, inner: AppExecutor, metrics: SuperNodeMetrics) -> None:
        self._inner = inner
        self._m = metrics

    async def execute(self, task: AppTask) -> AppResult:
        began = time.perf_counter()
        try:
            result = await self._inner.execute(task)
        except StamenError as exc:
            if isinstance(exc, WorkerDiedError):
                self._m.restarts.inc()
            self._m.failed.inc()
            raise
        finally:
            self._m.tasks.inc()
            self._m.duration.observe(time.perf_counter() - began)
        if _is_error_reply(result):
            self._m.failed.inc()
        return result

    async def aclose(self) -> None:
        await self._inner.aclose()


def _is_error_reply(result: AppResult) -> bool:
    """Error replies carry no objects and a small payload: only those are decoded."""
    if result.envelope.object_ids:
        return False
    try:
        return decode_message(result.envelope, {}).has_error()
    except StamenError:
        return True
