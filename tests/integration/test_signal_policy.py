"""The signal policy on real processes: the first SIGTERM stops gracefully, with the
documented exit code; a second one, while the graceful stop is held up, cancels
(EXIT_CANCELLED). The runner shows both: its graceful stop marks the run stopped at the
SuperLink, which a paused SuperLink holds up."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from procs import Proc, Procs, SuperLink, serverapp_args, superlink_args
from stamen.common.cli import EXIT_CANCELLED, EXIT_OK, exit_stopped

pytestmark = pytest.mark.integration

APP = """
import time

from stamen.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    print("app: started", flush=True)
    while True:  # until the runner closes the grid
        grid.get_nodes()
        time.sleep(0.05)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "looping_server.py").write_text(APP)
    return tmp_path


def start(procs: Procs, app_dir: Path) -> tuple[SuperLink, Proc]:
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None)))
    argv = serverapp_args("looping_server:app", app_dir, link.serverappio, certs=None,
                          run_config="")  # fmt: skip
    runner = procs.start("serverapp", argv)
    runner.wait_for(r"app: started")
    return link, runner


def test_the_first_sigterm_stops_the_run_gracefully(procs: Procs, app_dir: Path) -> None:
    link, runner = start(procs, app_dir)
    runner.popen.send_signal(signal.SIGTERM)
    assert runner.wait() == exit_stopped(signal.SIGTERM), runner.tail()
    assert runner.matches(r"SIGTERM: stopping the run gracefully")
    assert not runner.matches(r"forcing exit")
    assert link.proc.terminate() == EXIT_OK, link.proc.tail()


def test_a_second_sigterm_cancels_a_graceful_stop_held_up(procs: Procs, app_dir: Path) -> None:
    link, runner = start(procs, app_dir)
    os.kill(link.proc.pid, signal.SIGSTOP)  # the run cannot be marked stopped now
    try:
        runner.popen.send_signal(signal.SIGTERM)
        runner.wait_for(r"SIGTERM: stopping the run gracefully")
        runner.popen.send_signal(signal.SIGTERM)
        assert runner.wait() == EXIT_CANCELLED, runner.tail()
        assert runner.matches(r"SIGTERM again: forcing exit")
    finally:
        os.kill(link.proc.pid, signal.SIGCONT)
    assert link.proc.terminate() == EXIT_OK, link.proc.tail()
