"""The SuperNode's executors: a warm worker process (restarted when it dies) and a thread."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from stamen.client import ClientApp, NumPyClient
from stamen.client.task import AppResult, AppTask
from stamen.codec import decode_message, encode_message
from stamen.common.context import Context
from stamen.common.errors import AppLoadError, WorkerDiedError
from stamen.common.legacy import (
    FitIns,
    fitins_to_recorddict,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    recorddict_to_fitres,
)
from stamen.common.message import Message, MessageType
from stamen.common.records import ConfigValue
from stamen.supernode.executor import ThreadExecutor, WorkerProcessExecutor

APP = """
import os
import signal
import time

from stamen.client import ClientApp, NumPyClient


class PlusOne(NumPyClient):
    def fit(self, parameters, config):
        if config.get("die"):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(config.get("sleep", 0.0))
        return [p + 1 for p in parameters], 1, {"pid": os.getpid()}


app = ClientApp(client_fn=lambda context: PlusOne())
"""


def train_task(config: dict[str, ConfigValue] | None = None) -> AppTask:
    parameters = ndarrays_to_parameters([np.arange(3, dtype=np.float32)])
    content = fitins_to_recorddict(FitIns(parameters, config or {}))
    message = Message(content, dst_node_id=7, message_type=MessageType.TRAIN)
    message.metadata.run_id = 1
    envelope, objects = encode_message(message)
    return AppTask(envelope, objects, Context(run_id=1, node_id=7, node_config={}))


def fit_result(result: AppResult) -> tuple[list[float], int]:
    reply = decode_message(result.envelope, result.objects)
    fitres = recorddict_to_fitres(reply.content)
    pid = fitres.metrics["pid"]
    assert isinstance(pid, int)
    return parameters_to_ndarrays(fitres.parameters)[0].tolist(), pid


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[WorkerProcessExecutor]:
    (tmp_path / "plusone.py").write_text(textwrap.dedent(APP))
    executor = WorkerProcessExecutor("plusone:app", tmp_path, start_timeout=60)
    try:
        yield executor
    finally:
        await executor.aclose()


@pytest.mark.timeout(60)
async def test_worker_serves_tasks_warm_and_is_restarted_after_a_sigkill(
    worker: WorkerProcessExecutor,
) -> None:
    await worker.start()
    first_pid = worker.pid
    assert first_pid is not None
    assert first_pid != os.getpid()

    values, pid = fit_result(await worker.execute(train_task()))
    assert values == [1.0, 2.0, 3.0]
    assert pid == first_pid
    _, pid = fit_result(await worker.execute(train_task()))
    assert pid == first_pid  # the same warm process: the app was imported once

    with pytest.raises(WorkerDiedError, match="killed by SIGKILL"):
        await worker.execute(train_task({"die": True}))

    values, pid = fit_result(await worker.execute(train_task()))
    assert values == [1.0, 2.0, 3.0]
    assert pid != first_pid


@pytest.mark.timeout(60)
async def test_a_cancelled_task_costs_the_worker_and_leaves_no_stale_reply(
    worker: WorkerProcessExecutor,
) -> None:
    await worker.start()
    first_pid = worker.pid
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await worker.execute(train_task({"sleep": 30.0}))
    values, pid = fit_result(await worker.execute(train_task()))
    assert values == [1.0, 2.0, 3.0]
    assert pid != first_pid


@pytest.mark.timeout(60)
async def test_worker_reports_an_app_that_does_not_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    executor = WorkerProcessExecutor("broken:app", tmp_path, start_timeout=60)
    try:
        with pytest.raises(AppLoadError, match="no_such_module_here"):
            await executor.start()
    finally:
        await executor.aclose()
    assert executor.pid is None


class Doubler(NumPyClient):
    def fit(
        self, parameters: list[np.typing.NDArray[np.float32]], config: dict[str, ConfigValue]
    ) -> tuple[list[np.typing.NDArray[np.float32]], int, dict[str, int]]:
        return [p * 2 for p in parameters], 1, {"pid": os.getpid()}


async def test_thread_executor_runs_the_app_in_this_process() -> None:
    executor = ThreadExecutor(ClientApp(client_fn=lambda context: Doubler()))
    values, pid = fit_result(await executor.execute(train_task()))
    await executor.aclose()
    assert values == [0.0, 2.0, 4.0]
    assert pid == os.getpid()
