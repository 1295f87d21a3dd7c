"""metrics.png drawn by the CLI's pre-forked plotter: the same picture as drawn in-process,
its failures raised in the CLI, and no child left behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from stamen.server.history import History
from stamen.server.plot import plot_history
from stamen.simulation.plotter import Plotter

pytestmark = pytest.mark.timeout(60)

pytest.importorskip("matplotlib")


def _history() -> History:
    history = History()
    history.losses_distributed.extend([(1, 2.5), (2, 1.25)])
    history.metrics_distributed["accuracy"] = [(1, 0.5), (2, 0.75)]
    history.metrics_distributed_fit["train_loss"] = [(1, 2.0), (2, 1.0)]
    return history


def _started() -> Plotter:
    plotter = Plotter.start()
    if plotter is None:  # pytest-timeout's thread, say: the CLI has none at this point
        pytest.skip("another thread runs: Plotter.start does not fork then")
    return plotter


def _gone(plotter: Plotter) -> bool:
    try:
        os.waitpid(plotter._pid, os.WNOHANG)
    except ChildProcessError:
        return True  # reaped
    return False


def test_the_child_draws_the_picture_the_cli_would(tmp_path: Path) -> None:
    plotter = _started()

    drawn = plotter.draw(_history(), tmp_path / "child.png")

    assert drawn is True
    assert plot_history(_history(), tmp_path / "here.png")
    assert (tmp_path / "child.png").read_bytes() == (tmp_path / "here.png").read_bytes()
    assert _gone(plotter)


def test_a_picture_that_cannot_be_written_fails_in_the_cli(tmp_path: Path) -> None:
    plotter = _started()

    with pytest.raises(OSError, match="No such file"):
        plotter.draw(_history(), tmp_path / "missing" / "metrics.png")
    assert _gone(plotter)


def test_a_plotter_not_asked_to_draw_is_ended_and_reaped() -> None:
    plotter = _started()

    plotter.close()
    plotter.close()  # once is enough

    assert _gone(plotter)


def test_without_matplotlib_the_cli_draws_it_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the child inherits: ImportError
    plotter = _started()

    assert plotter.draw(_history(), tmp_path / "metrics.png") is None  # plot_history logs
    assert not (tmp_path / "metrics.png").exists()
    assert _gone(plotter)
