"""End the `stamen-simulation` process without the interpreter's finalization.

Once the run is over, tearing the interpreter down (freeing every module, torch's objects
among them) takes most of a second and produces nothing. So the process does what an exit
must do and then leaves at once: it waits for no other thread (it falls back to the usual
exit when a non-daemon thread still runs, as that exit would wait for it), runs the
`atexit` handlers (logging flushes and closes its handlers there; multiprocessing reaps
its children; the worker pool ends workers it left behind), flushes stdout and stderr,
and calls `os._exit` with the exit code Python would have used.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

__all__ = ["end_process"]


def end_process(code: int) -> NoReturn:
    """Exit with `code` once every output is flushed and every child reaped, skipping
    the interpreter's finalization; the usual `sys.exit` where that would not be safe."""
    main = threading.main_thread()
    if threading.current_thread() is not main or any(
        thread is not main and not thread.daemon and thread.is_alive()
        for thread in threading.enumerate()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()  # what `sys.exit` would run, in the same order
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe: let Python report it (exit code 120)
        sys.exit(code)
    os._exit(code)
