"""The worker pool: real worker processes running a small numpy app.

One forkserver pool of two workers serves most tests (starting workers costs ~0.5 s);
tests that close a pool or fail to load one start their own.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import pytest_asyncio
from stamen.client import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from stamen.client.task import AppResult, AppTask
from stamen.codec import decode_message, encode_message
from stamen.common.context import Context
from stamen.common.errors import AppLoadError, WorkerDiedError
from stamen.common.legacy import fitins_to_recorddict, recorddict_to_fitres
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.workers.pool import PoolClosedError, WorkerPool
from worker_checks import our_processes, our_segments, outcome, task_started

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

APP = """
import os
import signal
import socket
import time

import numpy as np
from stamen.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def fit(self, parameters, config):
        mode = config.get("mode", "echo")
        if mode == "raise":
            raise ValueError("the client failed on purpose")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        calls = self.context.state.get("calls", MetricRecord({"n": 0}))
        self.context.state["calls"] = MetricRecord({"n": calls["n"] + 1})
        if mode == "noise":
            rng = np.random.default_rng(int(config["seed"]))  # user code seeds
            parameters = [p + rng.standard_normal(p.shape).astype(p.dtype) for p in parameters]
        if mode == "double":
            parameters = [p * 2 for p in parameters]
        return parameters, 1, {"pid": os.getpid()}


app = ClientApp(client_fn=lambda context: Client())

views = ClientApp()


@views.train()
def train(message, context):
    config = message.content["config"]
    if config["mode"] == "stubborn":  # does not yield to an interrupt
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if config["mode"] in ("sleep", "stubborn"):
        socket.create_connection(("127.0.0.1", config["port"])).close()  # "I have started"
        time.sleep(60)
    [array] = message.content["arrays"].to_numpy_ndarrays()
    metrics = MetricRecord({"writeable": int(array.flags.writeable)})
    names = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
    env = ConfigRecord({name: os.environ.get(name, "") for name in names})
    return message.create_reply(
        RecordDict({"arrays": ArrayRecord([array]), "m": metrics, "env": env})
    )
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("simulation_app")
    (directory / "sim_app.py").write_text(textwrap.dedent(APP))
    return directory


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(app_dir: Path) -> AsyncIterator[WorkerPool]:
    # num_cpus=0.5: two workers even on a one-CPU machine.
    async with WorkerPool("sim_app:app", app_dir, num_workers=2, num_cpus=0.5) as pool:
        async with asyncio.timeout(30):
            await pool.started()
        yield pool


def fit_task(params: list[npt.NDArray[Any]], node_id: int = 1, **config: Any) -> AppTask:
    content = fitins_to_recorddict(FitIns(ndarrays_to_parameters(params), config))
    envelope, objects = encode_message(Message(content, dst_node_id=node_id, message_type="train"))
    return AppTask(envelope, objects, Context(run_id=1, node_id=node_id, node_config={}))


def fit_result(result: AppResult) -> tuple[list[npt.NDArray[Any]], dict[str, Any]]:
    res = recorddict_to_fitres(decode_message(result.envelope, result.objects).content)
    return parameters_to_ndarrays(res.parameters), dict(res.metrics)


async def run_all(pool: WorkerPool, tasks: list[AppTask]) -> list[AppResult]:
    async with asyncio.timeout(30):
        return list(await asyncio.gather(*(pool.execute(task) for task in tasks)))


async def pids_serving(pool: WorkerPool) -> set[int]:
    """The workers' pids: with every worker idle, concurrent tasks go one per worker."""
    await pool.started()
    results = await run_all(pool, [fit_task([np.zeros(3)]) for _ in range(pool.num_workers)])
    return {fit_result(r)[1]["pid"] for r in results}


async def test_numpy_client_tasks_run_on_both_workers(pool: WorkerPool) -> None:
    tasks = [
        fit_task([np.full(4, i, dtype=np.float32)], node_id=i, mode="double") for i in range(6)
    ]
    await pool.started()
    results = await run_all(pool, tasks)
    pids = set()
    for i, result in enumerate(results):
        [array], metrics = fit_result(result)
        np.testing.assert_array_equal(array, np.full(4, 2 * i, dtype=np.float32))
        assert result.state["calls"] == MetricRecord({"n": 1})  # Context.state comes back
        pids.add(metrics["pid"])
    assert len(pids) == 2


async def test_a_broadcast_model_crosses_once_through_shared_memory_and_back_bit_exact(
    pool: WorkerPool,
) -> None:
    model = np.random.default_rng(7).standard_normal(2 << 20).astype(np.float32)  # 8 MiB
    before = pool.transfers
    results = await run_all(pool, [fit_task([model], node_id=i) for i in range(4)])
    after = pool.transfers
    assert after.segments_created - before.segments_created == 1  # one copy for 4 tasks
    assert after.objects_shared - before.objects_shared == 4
    assert after.replies_shared - before.replies_shared == 4
    for result in results:
        [array], _ = fit_result(result)
        assert array.tobytes() == model.tobytes()


async def test_a_client_that_raises_gets_an_error_reply_and_the_pool_serves_on(
    pool: WorkerPool,
) -> None:
    [result] = await run_all(pool, [fit_task([np.zeros(2)], mode="raise")])
    reply = decode_message(result.envelope, result.objects)
    assert reply.has_error()
    assert "the client failed on purpose" in reply.error.reason
    [array], _ = fit_result((await run_all(pool, [fit_task([np.ones(2)])]))[0])
    np.testing.assert_array_equal(array, np.ones(2))


async def test_a_killed_worker_fails_only_its_task_and_is_replaced(pool: WorkerPool) -> None:
    before = await pids_serving(pool)
    with pytest.raises(WorkerDiedError, match="SIGKILL"):
        await run_all(pool, [fit_task([np.zeros(2)], mode="kill")])
    async with asyncio.timeout(30):
        after = await pids_serving(pool)  # waits for the replacement to load the app
    assert len(after) == 2
    assert len(after - before) == 1  # the replacement serves, beside the survivor


async def test_the_same_task_gives_the_same_bytes_on_any_worker(pool: WorkerPool) -> None:
    base = np.linspace(0, 1, 10_000, dtype=np.float32)
    await pool.started()
    results = await run_all(pool, [fit_task([base], mode="noise", seed=3) for _ in range(4)])
    outputs = {fit_result(r)[0][0].tobytes() for r in results}
    pids = {fit_result(r)[1]["pid"] for r in results}
    assert len(pids) == 2
    assert len(outputs) == 1


async def test_executor_handles_share_the_pool_and_close_alone(pool: WorkerPool) -> None:
    first, second = pool.executor(), pool.executor()
    async with asyncio.timeout(30):
        [array], _ = fit_result(await first.execute(fit_task([np.ones(3)], mode="double")))
        np.testing.assert_array_equal(array, np.full(3, 2.0))
        await first.aclose()
        with pytest.raises(PoolClosedError):
            await first.execute(fit_task([np.ones(3)]))
        await second.execute(fit_task([np.ones(3)]))


async def test_an_app_that_does_not_load_fails_fast_with_app_load_error(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('no data directory here')\n")
    async with WorkerPool("broken_app:app", tmp_path, num_workers=1) as pool:
        async with asyncio.timeout(30):
            with pytest.raises(AppLoadError, match="no data directory here"):
                await pool.started()
            with pytest.raises(AppLoadError):
                await pool.execute(fit_task([np.zeros(2)]))


async def test_gpu_clients_see_only_the_gpu_they_were_given(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    async with WorkerPool(
        "sim_app:views",
        app_dir,
        num_workers=2,
        num_cpus=0.5,
        num_gpus=0.5,
        start_method="forkserver",  # quicker here; GPU clients get spawn by default
    ) as pool:
        await pool.started()
        results = await run_all(pool, [view_task(np.zeros(2), mode="echo") for _ in range(2)])
    envs = [decode_message(r.envelope, r.objects).content["env"] for r in results]
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in envs) == ["3", "5"]
    assert {env["OMP_NUM_THREADS"] for env in envs} == {"1"}


def view_task(array: npt.NDArray[Any], **config: Any) -> AppTask:
    content = RecordDict({"arrays": ArrayRecord([array]), "config": ConfigRecord(config)})
    envelope, objects = encode_message(Message(content, dst_node_id=1, message_type="train"))
    return AppTask(envelope, objects, Context(run_id=1, node_id=1, node_config={}))


async def test_close_fails_pending_tasks_and_leaves_no_process_or_segment(
    app_dir: Path,
) -> None:
    processes_before = our_processes()
    model = np.arange(2 << 20, dtype=np.float32)  # 8 MiB: through shared memory
    pool = WorkerPool(
        "sim_app:views", app_dir, num_workers=1, start_method="spawn", stop_timeout=2.0
    )
    async with task_started() as (port, started), pool:
        async with asyncio.timeout(30):
            await pool.started()
            result = await pool.execute(view_task(model, mode="echo"))
        reply = decode_message(result.envelope, result.objects)
        assert reply.content["m"] == MetricRecord({"writeable": 0})  # a view, not a copy
        assert (
            reply.content.array_records["arrays"].to_numpy_ndarrays()[0].tobytes()
            == model.tobytes()
        )
        assert pool.transfers.replies_shared == 1
        assert our_segments(pool)

        async with asyncio.TaskGroup() as tg:
            sleep = view_task(model, mode="sleep", port=port)
            running = tg.create_task(outcome(pool.execute(sleep)))
            queued = tg.create_task(outcome(pool.execute(view_task(model, mode="echo"))))
            async with asyncio.timeout(30):
                await started.wait()  # the sleeping task runs in the worker
                await pool.aclose()  # without waiting out the 60 s the task sleeps
        assert isinstance(running.result(), PoolClosedError)
        assert isinstance(queued.result(), PoolClosedError)
        with pytest.raises(PoolClosedError):
            await pool.execute(view_task(model, mode="echo"))
    assert our_segments(pool) == []
    assert our_processes() <= processes_before


@pytest.mark.parametrize(("mode", "replaced"), [("sleep", False), ("stubborn", True)])
async def test_a_cancelled_task_is_interrupted_or_its_worker_killed_and_replaced(
    app_dir: Path, mode: str, replaced: bool
) -> None:
    model = np.arange(4, dtype=np.float32)
    pool = WorkerPool(
        "sim_app:views", app_dir, num_workers=1, start_method="spawn", cancel_grace=0.5
    )
    async with task_started() as (port, started), pool:
        async with asyncio.timeout(30):
            await pool.started()
        workers = our_processes()
        task = asyncio.create_task(pool.execute(view_task(model, mode=mode, port=port)))
        async with asyncio.timeout(30):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(30):  # the next task runs: the worker is free again
            result = await pool.execute(view_task(model, mode="echo"))
        assert decode_message(result.envelope, result.objects).has_content()
        assert (our_processes() != workers) is replaced


async def test_a_task_cancelled_while_it_waits_behind_another_never_runs(app_dir: Path) -> None:
    """A worker's slot holds the next task while the worker runs one; cancelled there,
    it is dropped, not run once the worker is free."""
    model = np.arange(4, dtype=np.float32)
    pool = WorkerPool(
        "sim_app:views", app_dir, num_workers=1, start_method="spawn", cancel_grace=0.5
    )
    starts: list[int] = []
    started = asyncio.Event()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        starts.append(1)
        started.set()
        writer.close()

    async with await asyncio.start_server(on_connect, "127.0.0.1", 0) as server, pool:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(30):
            await pool.started()
        running = asyncio.create_task(pool.execute(view_task(model, mode="sleep", port=port)))
        async with asyncio.timeout(30):
            await started.wait()
        waiting = asyncio.create_task(pool.execute(view_task(model, mode="sleep", port=port)))
        await asyncio.sleep(0)  # handed to the slot, behind the running task
        for task in (waiting, running):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        async with asyncio.timeout(30):
            result = await pool.execute(view_task(model, mode="echo"))
        assert decode_message(result.envelope, result.objects).has_content()
    assert starts == [1]  # the waiting task never started
