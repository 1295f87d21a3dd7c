"""metrics.png drawn by a child process that imported matplotlib while the run started.

Importing matplotlib takes 0.5-0.9 s, and `--output-dir` used to pay it after the run, on
the critical path. The CLI's own start-up is one thread importing the apps (torch), so a
second core is free then: `Plotter.start` forks a child at once, which imports matplotlib
there and waits. After the run the CLI sends it the History (its dict, as in
history.json) and waits for the picture: nothing is lost, and a failure to write it is
the CLI's failure, as before.

The child ignores SIGINT and SIGTERM (the CLI's signal policy decides) and leaves with
`os._exit`, never running the CLI's exit handlers. Where it cannot help (no fork, or
matplotlib is not installed) `draw` answers None and the CLI draws the picture itself,
with its usual log line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from stamen.server.history import History

__all__ = ["Plotter"]


class Plotter:
    """A forked child that draws one History into metrics.png when asked."""

    def __init__(self, pid: int, conn: Connection) -> None:
        self._pid = pid
        self._conn = conn
        self._reaped = False

    @classmethod
    def start(cls) -> Plotter | None:
        """Fork the child now; None where a fork is not safe (another thread runs) or
        not possible."""
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        ours, theirs = Pipe()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return None
        if pid == 0:
            ours.close()
            _serve(theirs)
        theirs.close()
        return cls(pid, ours)

    def draw(self, history: History, path: Path) -> bool | None:
        """Draw `history` into `path` in the child: `plot_history`'s answer, or None when
        the child cannot (matplotlib missing, the child gone): draw it here then. The
        child's exception (OSError when `path` cannot be written) is raised here."""
        try:
            self._conn.send((history.to_dict(), str(path)))
            outcome, value = self._conn.recv()
        except (OSError, EOFError):
            return None
        finally:
            self.close()
        if outcome == "failed":
            raise value
        return None if outcome == "absent" else bool(value)

    def close(self) -> None:
        """End the child (at once, if it was not asked to draw) and reap it."""
        if self._reaped:
            return
        self._reaped = True
        self._conn.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)  # done already, or no longer needed
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)


def _serve(conn: Connection) -> NoReturn:
    """The child: import what drawing needs, draw the one History it is sent, leave."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        from stamen.server.history import History
        from stamen.server.plot import plot_history

        try:
            import matplotlib

            matplotlib.use("Agg")  # as plot_history does
            import matplotlib.pyplot  # the import that the run would wait for
        except ImportError:
            available = False
        else:
            available = True
        data, path = conn.recv()
        if not available:
            conn.send(("absent", None))
        else:
            try:
                conn.send(("drawn", plot_history(History.from_dict(data), path)))
            except Exception as exc:  # the CLI reports it, as if it had drawn the picture
                conn.send(("failed", exc))
    except BaseException:  # EOFError: not needed after all; nothing to report from here
        pass
    os._exit(0)
