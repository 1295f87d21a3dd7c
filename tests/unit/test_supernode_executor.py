"""The SuperNode's executors: a warm worker process (restarted when it dies) and a thread."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
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
from stamen.workers.pool import PoolClosedError
from stamen.workers.shm import INLINE_LIMIT
from worker_checks import our_processes, our_segments, outcome, task_started

APP = """
import os
import signal
import socket
import time

from stamen.client import ClientApp, NumPyClient


class PlusOne(NumPyClient):
    def fit(self, parameters, config):
        if config.get("die"):
            os.kill(os.getpid(), signal.SIGKILL)
        if config.get("port"):
            socket.create_connection(("127.0.0.1", config["port"])).close()  # "I have started"
        time.sleep(config.get("sleep", 0.0))
        threads = os.environ.get("OMP_NUM_THREADS", "")
        return [p + 1 for p in parameters], 1, {"pid": os.getpid(), "threads": threads}


app = ClientApp(client_fn=lambda context: PlusOne())
"""


def train_task(
    config: dict[str, ConfigValue] | None = None, array: npt.NDArray[np.float32] | None = None
) -> AppTask:
    array = np.arange(3, dtype=np.float32) if array is None else array
    content = fitins_to_recorddict(FitIns(ndarrays_to_parameters([array]), config or {}))
    message = Message(content, dst_node_id=7, message_type=MessageType.TRAIN)
    message.metadata.run_id = 1
    envelope, objects = encode_message(message)
    return AppTask(envelope, objects, Context(run_id=1, node_id=7, node_config={}))


def fit_result(result: AppResult) -> tuple[list[float], int]:
    values, metrics = fit_reply(result)
    pid = metrics["pid"]
    assert isinstance(pid, int)
    return values.tolist(), pid


def fit_reply(result: AppResult) -> tuple[npt.NDArray[np.float32], dict[str, object]]:
    reply = decode_message(result.envelope, result.objects)
    fitres = recorddict_to_fitres(reply.content)
    return parameters_to_ndarrays(fitres.parameters)[0], dict(fitres.metrics)


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
    worker: WorkerProcessExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await worker.start()

    values, first_pid = fit_result(await worker.execute(train_task()))
    assert values == [1.0, 2.0, 3.0]
    assert first_pid != os.getpid()
    loaded = f"ClientApp plusone:app loaded in worker pid {first_pid} ("
    assert any(message.startswith(loaded) for message in caplog.messages)
    _, pid = fit_result(await worker.execute(train_task()))
    assert pid == first_pid  # the same warm process: the app was imported once

    with pytest.raises(WorkerDiedError, match="killed by SIGKILL"):
        await worker.execute(train_task({"die": True}))

    values, pid = fit_result(await worker.execute(train_task()))
    assert values == [1.0, 2.0, 3.0]
    assert pid != first_pid
    assert f"ClientApp plusone:app loaded in worker pid {pid}, a replacement" in caplog.messages


@pytest.mark.timeout(60)
async def test_the_worker_ignores_sigterm_and_keeps_the_default_threads(
    worker: WorkerProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the node's setting, which the worker keeps
    await worker.start()
    _, pid = fit_result(await worker.execute(train_task()))

    os.kill(pid, signal.SIGTERM)  # a service manager signals the node's whole group
    _, metrics = fit_reply(await worker.execute(train_task()))
    assert metrics["pid"] == pid
    assert metrics["threads"] == "3"  # not one CPU's share


@pytest.mark.timeout(60)
async def test_a_large_model_crosses_through_shared_memory_and_leaves_no_segment(
    worker: WorkerProcessExecutor,
) -> None:
    model = np.arange(INLINE_LIMIT, dtype=np.float32)  # 4 x INLINE_LIMIT bytes
    await worker.start()

    values, _ = fit_reply(await worker.execute(train_task(array=model)))

    assert values.tobytes() == (model + 1).tobytes()
    transfers = worker.transfers
    assert transfers.objects_shared == 1
    assert transfers.replies_shared == 1
    assert our_segments(worker)
    await worker.aclose()
    assert our_segments(worker) == []


@pytest.mark.timeout(60)
async def test_a_cancelled_task_leaves_no_stale_reply_for_the_next(
    worker: WorkerProcessExecutor,
) -> None:
    await worker.start()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await worker.execute(train_task({"sleep": 2.0}, np.full(3, 10, np.float32)))
    values, _ = fit_result(await worker.execute(train_task()))
    assert values == [1.0, 2.0, 3.0]  # not [11.0, 11.0, 11.0]


@pytest.mark.timeout(60)
async def test_close_stops_a_busy_worker_at_once_and_leaves_no_process(
    worker: WorkerProcessExecutor,
) -> None:
    processes_before = our_processes()
    await worker.start()
    async with task_started() as (port, started), asyncio.TaskGroup() as tg:
        busy = tg.create_task(outcome(worker.execute(train_task({"port": port, "sleep": 30.0}))))
        async with asyncio.timeout(10):
            await started.wait()
            await worker.aclose()  # without waiting out the 30 s the task sleeps
    assert isinstance(busy.result(), PoolClosedError)
    assert our_processes() <= processes_before


@pytest.mark.timeout(60)
async def test_worker_reports_an_app_that_does_not_import(tmp_path: Path) -> None:
    processes_before = our_processes()
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    executor = WorkerProcessExecutor("broken:app", tmp_path, start_timeout=60)
    try:
        with pytest.raises(AppLoadError, match="no_such_module_here"):
            await executor.start()
    finally:
        await executor.aclose()
    assert our_processes() <= processes_before


@pytest.mark.timeout(60)
async def test_an_app_that_imports_too_slowly_fails_the_start(tmp_path: Path) -> None:
    processes_before = our_processes()
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(60)\n")
    executor = WorkerProcessExecutor("slow:app", tmp_path, start_timeout=1)
    try:
        with pytest.raises(WorkerDiedError, match="did not import 'slow:app' within 1s"):
            await executor.start()
    finally:
        await executor.aclose()
    assert our_processes() <= processes_before


TORCH_APP = """
import sys

import torch  # noqa: F401  (an app of a library with lazy imports)

from stamen.client import ClientApp, NumPyClient


class Probe(NumPyClient):
    def fit(self, parameters, config):
        return parameters, 1, {"warmed": int("torch._dynamo" in sys.modules)}


app = ClientApp(client_fn=lambda context: Probe())
"""


@pytest.mark.timeout(120)
async def test_the_warm_worker_imports_the_libraries_lazy_modules_before_the_first_task(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    (tmp_path / "probe.py").write_text(textwrap.dedent(TORCH_APP))
    executor = WorkerProcessExecutor("probe:app", tmp_path, start_timeout=100)
    try:
        await executor.start()
        _, metrics = fit_reply(await executor.execute(train_task()))
    finally:
        await executor.aclose()
    assert metrics["warmed"] == 1  # not left for the first optimizer step of round one


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
