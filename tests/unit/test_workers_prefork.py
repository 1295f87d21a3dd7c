"""Workers forked from the pool's own process before its event loop runs (`prefork`).

The forking test runs in a fresh interpreter, as a script would: a pytest process may
hold threads left by earlier tests, and then (rightly) refuses to fork.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from stamen.workers.launcher import fork_blocker

pytestmark = pytest.mark.timeout(90)

APP = """
import logging
import os
import signal

from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def fit(self, parameters, config):
        if config.get("mode") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        logging.getLogger("prefork_app").warning("fit in the worker")
        return parameters, 1, {"pid": os.getpid(), "ppid": os.getppid()}


app = ClientApp(client_fn=lambda context: Client().to_client())
"""

SCRIPT = """
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from stamen.client import ClientApp, FitIns, ndarrays_to_parameters
from stamen.client.task import AppTask
from stamen.codec import decode_message, encode_message
from stamen.common.context import Context
from stamen.common.errors import WorkerDiedError
from stamen.common.legacy import fitins_to_recorddict, recorddict_to_fitres
from stamen.common.loading import load_app
from stamen.common.message import Message
from stamen.workers.pool import WorkerPool

def task(**config):
    content = fitins_to_recorddict(FitIns(ndarrays_to_parameters([np.zeros(2)]), config))
    envelope, objects = encode_message(Message(content, dst_node_id=1, message_type="train"))
    return AppTask(envelope, objects, Context(run_id=1, node_id=1, node_config={}))


async def parents(pool):
    await pool.started()
    results = await asyncio.gather(*(pool.execute(task()) for _ in range(2)))
    metrics = [recorddict_to_fitres(decode_message(r.envelope, r.objects).content).metrics
               for r in results]
    return {int(m["pid"]): int(m["ppid"]) for m in metrics}


async def serve_and_close(pool):
    async with asyncio.timeout(60):
        async with pool:
            first = await parents(pool)
            began = time.monotonic()
        return first, time.monotonic() - began


async def replace_one(pool):
    async with asyncio.timeout(60):
        async with pool:
            first = await parents(pool)
            try:
                await pool.execute(task(mode="kill"))
            except WorkerDiedError:
                died = True
            else:
                died = False
            return first, died, await parents(pool)


def new_pool(app_dir):
    return WorkerPool("prefork_app:app", app_dir, num_workers=2, num_cpus=0.5, stop_timeout=10.0)


if __name__ == "__main__":  # a replacement worker's forkserver imports this file
    app_dir = Path(sys.argv[1])
    logging.basicConfig(filename=app_dir / "parent.log", level=logging.INFO)
    load_app("prefork_app:app", ClientApp, app_dir)  # imported, as a script's app object is
    pool = new_pool(app_dir)
    forked = pool.prefork()
    first, closing = asyncio.run(serve_and_close(pool))
    pool = new_pool(app_dir)
    forked_again = pool.prefork()
    before, died, after = asyncio.run(replace_one(pool))
    children = psutil.Process().children(recursive=True)
    print(json.dumps({
        "pid": os.getpid(),
        "forked": [forked, forked_again],
        "first": first,
        "closing": closing,
        "before": before,
        "died": died,
        "after": after,
        "left": [p.pid for p in children if "resource_tracker" not in " ".join(p.cmdline())],
        "segments": [p.name for p in Path("/dev/shm").glob(pool.segment_prefix + "*")],
    }))
"""


def test_workers_forked_from_the_pools_process_serve_and_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "prefork_app.py").write_text(textwrap.dedent(APP))
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))

    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["forked"] == [True, True]
    first = {int(pid): ppid for pid, ppid in report["first"].items()}
    assert len(first) == 2
    assert set(first.values()) == {report["pid"]}  # forked by the script itself
    # Each worker saw its pipe close (its copy of the pool's end was closed): none was killed.
    assert report["closing"] < 8.0  # a worker not told by its pipe is killed after 10 s
    assert report["died"] is True
    before = {int(pid) for pid in report["before"]}
    after = {int(pid): ppid for pid, ppid in report["after"].items()}
    [replacement] = set(after) - before
    assert after[replacement] != report["pid"]  # from the forkserver, launched on demand
    assert report["left"] == []
    assert report["segments"] == []
    # A forked worker logs in its own format, not through the script's handlers.
    assert "fit in the worker" not in (tmp_path / "parent.log").read_text()
    assert "[worker " in done.stderr


def test_fork_blocker_names_what_forbids_a_fork() -> None:
    assert fork_blocker("spawn", 1) == "the workers are spawned"
    assert fork_blocker("forkserver", 2) is not None
    assert "several threads" in str(fork_blocker("forkserver", 2))
    release = threading.Event()
    other = threading.Thread(target=release.wait, args=(10.0,))
    other.start()
    try:
        assert fork_blocker("forkserver", 1) == "other threads run in this process"
    finally:
        release.set()
        other.join()


async def test_no_fork_while_an_event_loop_runs() -> None:
    asyncio.get_running_loop()

    assert fork_blocker("forkserver", 1) == "an event loop runs in this thread"
