"""The SuperNode's task metrics: a wrapped executor counts tasks, failures (error
replies and executor errors) and worker restarts, and times each task."""

from __future__ import annotations

import numpy as np
import pytest
from stamen.client.task import AppResult, AppTask
from stamen.codec import encode_message
from stamen.common.context import Context
from stamen.common.errors import WorkerDiedError
from stamen.common.message import Error, ErrorCode, Message
from stamen.common.records import ArrayRecord, MetricRecord, RecordDict
from stamen.supernode.telemetry import InstrumentedExecutor, SuperNodeMetrics


def task() -> AppTask:
    message = Message(RecordDict(), dst_node_id=5, message_type="train", ttl=60)
    envelope, objects = encode_message(message)
    return AppTask(envelope, objects, Context(run_id=1, node_id=5, node_config={}, run_config={}))


class Scripted:
    """An executor that answers each task as its script says: "ok", "arrays", "error"
    (an error reply) or "died" (the worker died)."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)

    async def execute(self, task: AppTask) -> AppResult:
        step = self.script.pop(0)
        instruction = Message(RecordDict(), metadata=task.envelope.metadata)
        if step == "died":
            raise WorkerDiedError("killed by signal 9")
        if step == "error":
            reply = instruction.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, "boom"))
        elif step == "arrays":
            reply = instruction.create_reply(RecordDict({"m": ArrayRecord([np.ones(3)])}))
        else:
            reply = instruction.create_reply(RecordDict({"m": MetricRecord({"loss": 0.5})}))
        envelope, objects = encode_message(reply)
        return AppResult(envelope, objects, RecordDict())

    async def aclose(self) -> None:
        pass


def count(metrics: SuperNodeMetrics, name: str) -> float:
    found = metrics.registry.get_sample_value(name)
    assert found is not None
    return found


async def test_tasks_failures_and_restarts_are_counted() -> None:
    metrics = SuperNodeMetrics()
    executor = InstrumentedExecutor(Scripted("ok", "arrays", "error", "died", "ok"), metrics)

    for _ in range(3):
        await executor.execute(task())
    with pytest.raises(WorkerDiedError):
        await executor.execute(task())
    await executor.execute(task())

    assert count(metrics, "stamen_supernode_tasks_total") == 5
    assert count(metrics, "stamen_supernode_tasks_failed_total") == 2
    assert count(metrics, "stamen_supernode_worker_restarts_total") == 1
    assert count(metrics, "stamen_supernode_task_duration_seconds_count") == 5
