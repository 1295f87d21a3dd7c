"""The table printed when a run ends (`stamen-simulation`, `stamen-serverapp`): one row
per round, built from its History.

    round  loss    accuracy  train_loss  failures  seconds
    1      0.8164  0.7614    1.107       0         0.31
    2      0.5532  0.8427    0.6928      1         0.22

Columns: the distributed (federated evaluation) loss, the centralized loss and metrics
(prefixed "central"), the evaluation metrics, the training metrics (prefixed "fit" where a
name would clash), the replies that failed (`History.failures`: errors and timeouts, all
phases together), and the round's duration (`History.round_times`); columns with no
values are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stamen.common.legacy import Scalar

if TYPE_CHECKING:
    from stamen.server.history import History

__all__ = ["summary_table"]

Series = Sequence[tuple[int, Scalar]]


def summary_table(history: History) -> str:
    """The History as an aligned text table ("" when it holds nothing)."""
    columns: dict[str, dict[int, Scalar]] = {}

    def add(name: str, series: Series) -> None:
        if series:
            columns.setdefault(name, {}).update(series)

    add("loss", history.losses_distributed)
    add("central loss", history.losses_centralized)
    for name, series in history.metrics_centralized.items():
        add(f"central {name}", series)
    for name, series in history.metrics_distributed.items():
        add(name if name not in columns else f"evaluate {name}", series)
    for name, series in history.metrics_distributed_fit.items():
        add(name if name not in columns else f"fit {name}", series)
    add("failures", history.failures)
    add("seconds", [(r, round(s, 2)) for r, s in history.round_times])
    rounds = sorted({r for values in columns.values() for r in values})
    if not rounds:
        return ""
    header = ["round", *columns]
    rows = [[str(r), *(_cell(values.get(r)) for values in columns.values())] for r in rounds]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = (
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    )
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Scalar | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)
