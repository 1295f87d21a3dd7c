"""metrics.png: the loss and each metric of a History per round, in one picture.

One panel for the loss and one per metric name; in each, a line per source: distributed
(federated evaluation), centralized (the strategy's own evaluation) and fit (training
metrics). matplotlib is an optional extra (`stamen[plot]`): without it no picture is
drawn and one log line says how to get it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

from stamen.common.legacy import Scalar

from .history import History

__all__ = ["plot_history"]

logger = logging.getLogger(__name__)

_COLUMNS = 2
_PANEL_SIZE = (4.8, 3.0)


def plot_history(history: History, path: str | os.PathLike[str]) -> bool:
    """Draw `history` into the PNG file `path`; False (and one log line) when matplotlib
    is not installed or the History has nothing to draw."""
    panels = _panels(history)
    if not panels:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("metrics.png skipped: matplotlib is not installed (pip install 'stamen[plot]')")
        return False
    rows = math.ceil(len(panels) / _COLUMNS)
    columns = min(len(panels), _COLUMNS)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(_PANEL_SIZE[0] * columns, _PANEL_SIZE[1] * rows),
        squeeze=False,
    )
    try:
        cells = [ax for row in axes for ax in row]
        for ax, (title, lines) in zip(cells, panels.items(), strict=False):
            for label, series in lines.items():
                rounds = [r for r, _ in series]
                ax.plot(rounds, [float(v) for _, v in series], marker="o", label=label)
            ax.set_title(title)
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
            ax.xaxis.get_major_locator().set_params(integer=True)
        for ax in cells[len(panels) :]:
            ax.set_visible(False)
        figure.tight_layout()
        figure.savefig(path, dpi=80)
    finally:
        plt.close(figure)
    return True


def _panels(history: History) -> dict[str, dict[str, Sequence[tuple[int, Scalar]]]]:
    """Panel title -> line label -> numeric points; empty lines and panels left out."""
    panels: dict[str, dict[str, Sequence[tuple[int, Scalar]]]] = {}

    def add(title: str, label: str, series: Sequence[tuple[int, Scalar]]) -> None:
        points = [(r, v) for r, v in series if _numeric(v)]
        if points:
            panels.setdefault(title, {})[label] = points

    add("loss", "distributed", history.losses_distributed)
    add("loss", "centralized", history.losses_centralized)
    for label, metrics in (
        ("distributed", history.metrics_distributed),
        ("centralized", history.metrics_centralized),
        ("fit", history.metrics_distributed_fit),
    ):
        for name, series in metrics.items():
            add(name, label, series)
    return panels


def _numeric(value: Scalar) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
