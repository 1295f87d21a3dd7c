"""Experiment trackers: a callable that hears each round's metrics when the round ends.

    from stamen.server.tracking import RoundReport, add_round_hook

    def to_console(report: RoundReport) -> None:
        print(report.run_id, report.server_round, report.metrics)

    add_round_hook(to_console)  # e.g. in the ServerApp's module

`report.metrics` names each value once for all trackers: "loss/distributed",
"loss/centralized", "fit/<name>" (training metrics), "evaluate/<name>" (federated
evaluation) and "centralized/<name>" (the strategy's own evaluation). A hook runs in the
ServerApp's thread, after the round's History entries are written; one that raises is
logged and the run goes on. `examples/tracking/mlflow_hook.py` sends rounds to MLflow.

Hooks added with `add_round_hook` hear every run of this process; `scoped_round_hook`
adds one for the code (and threads started through `asyncio.to_thread`) in its block,
which is how the ServerApp runner reports rounds to the SuperLink.

Both loops report: the legacy round loop (`ServerApp(config=..., strategy=...)`) from its
History, and the Message API's `Strategy.start` from its Result (`report_result_round`),
which also fills the History that `recording_history` opened: how a `@app.main()` app's
run gets a History and final arrays without returning them (a `DefaultWorkflow` run in
it hands over its own with `record_history`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stamen.common.legacy import Scalar

from .history import History

if TYPE_CHECKING:
    from stamen.common.records import MetricRecord
    from stamen.serverapp.strategy.result import Result

__all__ = [
    "Recording",
    "RoundHook",
    "RoundReport",
    "add_round_hook",
    "record_history",
    "recording_history",
    "report_result_round",
    "report_round",
    "round_metrics",
    "scoped_round_hook",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoundReport:
    """One finished round: its metrics by name (see the module's doc) and its duration."""

    run_id: int
    server_round: int
    seconds: float | None
    metrics: Mapping[str, Scalar] = field(default_factory=dict)


RoundHook = Callable[[RoundReport], None]

_process_hooks: list[RoundHook] = []
_scoped_hooks: contextvars.ContextVar[tuple[RoundHook, ...]] = contextvars.ContextVar(
    "stamen_round_hooks", default=()
)


class Recording:
    """The History of a run whose loop does not return one (a `@app.main()` app)."""

    __slots__ = ("history",)

    def __init__(self) -> None:
        self.history = History()


_recording: contextvars.ContextVar[Recording | None] = contextvars.ContextVar(
    "stamen_recording", default=None
)


def add_round_hook(hook: RoundHook) -> Callable[[], None]:
    """Call `hook` after every round of every run in this process; returns a function
    that removes it again."""
    _process_hooks.append(hook)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _process_hooks.remove(hook)

    return remove


@contextlib.contextmanager
def scoped_round_hook(hook: RoundHook) -> Iterator[None]:
    """Call `hook` after each round run inside the block (this context only)."""
    token = _scoped_hooks.set((*_scoped_hooks.get(), hook))
    try:
        yield
    finally:
        _scoped_hooks.reset(token)


@contextlib.contextmanager
def recording_history() -> Iterator[Recording]:
    """A History that `Strategy.start` fills, round by round, within the block (or one
    that a legacy workflow hands over with `record_history`)."""
    recording = Recording()
    token = _recording.set(recording)
    try:
        yield recording
    finally:
        _recording.reset(token)


def record_history(history: History) -> None:
    """Make `history` the recorded one, if a recording is open (the default workflow's)."""
    recording = _recording.get()
    if recording is not None:
        recording.history = history


def report_result_round(
    result: Result, server_round: int, seconds: float, run_id: int, *, failures: int = 0
) -> None:
    """A Message-API strategy finished `server_round`, in which `failures` nodes sent no
    result: copy that round of `result` into the recorded History (if one is open) and
    tell every hook."""
    recording = _recording.get()
    history = History() if recording is None else recording.history
    rounds = (0, server_round) if server_round == 1 else (server_round,)
    for r in rounds:
        for add, by_round in (
            (history.add_metrics_distributed_fit, result.train_metrics_clientapp),
            (history.add_metrics_distributed, result.evaluate_metrics_clientapp),
            (history.add_metrics_centralized, result.evaluate_metrics_serverapp),
        ):
            if r in by_round:
                add(r, _scalars(by_round[r]))
    history.add_round_time(server_round, seconds)
    history.add_failures(server_round, failures)
    history.final_arrays = result.arrays
    report_round(history, server_round, run_id)


def _scalars(metrics: MetricRecord) -> dict[str, Scalar]:
    """The single numbers of a MetricRecord (lists are left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def report_round(history: History, server_round: int, run_id: int = 0) -> None:
    """Tell every hook that `server_round` ended, with what `history` holds for it."""
    hooks = (*_process_hooks, *_scoped_hooks.get())
    if not hooks:
        return
    seconds = next((s for r, s in reversed(history.round_times) if r == server_round), None)
    report = RoundReport(run_id, server_round, seconds, round_metrics(history, server_round))
    for hook in hooks:
        try:
            hook(report)
        except Exception:  # a tracker's failure must not end the run
            logger.exception("round hook %r raised; the run goes on", hook)


def round_metrics(history: History, server_round: int) -> dict[str, Scalar]:
    """The values `history` holds for one round, by their tracker names."""
    out: dict[str, Scalar] = {}
    for name, series in (
        ("loss/distributed", history.losses_distributed),
        ("loss/centralized", history.losses_centralized),
    ):
        for r, value in series:
            if r == server_round:
                out[name] = value
    for prefix, metrics in (
        ("fit", history.metrics_distributed_fit),
        ("evaluate", history.metrics_distributed),
        ("centralized", history.metrics_centralized),
    ):
        for key, values in metrics.items():
            for r, metric in values:
                if r == server_round:
                    out[f"{prefix}/{key}"] = metric
    return out
