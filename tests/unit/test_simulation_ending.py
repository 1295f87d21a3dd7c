"""`end_process`: the simulation CLI's exit skips finalization, never output or exit codes.

Each case is a real process: its stdout is a pipe (block-buffered), its log goes through
a buffering handler that only logging's own exit flushes, and a multiprocessing child is
still running when it decides to exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = """
import atexit, logging, logging.handlers, multiprocessing, sys, threading, time
from pathlib import Path

from stamen.simulation.ending import end_process

out = Path(sys.argv[1])


class Finalized:
    def __del__(self):  # runs only when the interpreter tears its modules down
        (out / "finalized").write_text("yes")


def child():
    time.sleep(0.3)
    (out / "child").write_text("done")


if __name__ == "__main__":
    keep = Finalized()
    target = logging.FileHandler(out / "log.txt")
    logging.getLogger().addHandler(logging.handlers.MemoryHandler(1000, target=target))
    logging.getLogger().warning("logged")
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    multiprocessing.get_context("fork").Process(target=child).start()
    if sys.argv[2] == "thread":  # a non-daemon thread that outlives the main one
        threading.Thread(target=lambda: (time.sleep(0.3), print("late"))).start()
    sys.stdout.write("table")
    if sys.argv[2] == "sys.exit":
        sys.exit(3)
    end_process(3)
"""


def run(tmp_path: Path, how: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / how
    out.mkdir()
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), str(out), how], capture_output=True, text=True, timeout=30
    )
    return done, out


def test_the_fast_exit_keeps_output_files_children_and_the_exit_code(tmp_path: Path) -> None:
    done, out = run(tmp_path, "end_process")

    assert done.returncode == 3, done.stderr
    assert done.stdout == "table"
    assert (out / "log.txt").read_text() == "logged\n"
    assert (out / "atexit").read_text() == "ran"
    assert (out / "child").read_text() == "done"
    assert not (out / "finalized").exists()  # the interpreter's teardown was skipped


def test_the_usual_exit_runs_the_finalization_that_the_fast_exit_skips(tmp_path: Path) -> None:
    done, out = run(tmp_path, "sys.exit")

    assert done.returncode == 3, done.stderr
    assert (out / "finalized").read_text() == "yes"


def test_a_thread_still_running_gets_the_usual_exit(tmp_path: Path) -> None:
    done, out = run(tmp_path, "thread")

    assert done.returncode == 3, done.stderr
    assert done.stdout == "tablelate\n"  # the exit waited for the thread
    assert (out / "log.txt").read_text() == "logged\n"
    assert (out / "child").read_text() == "done"
