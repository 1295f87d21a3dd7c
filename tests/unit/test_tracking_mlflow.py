"""examples/tracking/mlflow_tracking.py against a stand-in `mlflow` module that records
calls (mlflow is not a dependency), and against MLflow itself where it is installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from stamen.server.history import History
from stamen.server.tracking import RoundReport, report_round, scoped_round_hook

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tracking" / "mlflow_tracking.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("mlflow_tracking", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_mlflow(calls: list[tuple[Any, ...]]) -> ModuleType:
    module = ModuleType("mlflow")

    class Client:
        def log_metric(self, run_id: str, key: str, value: float, step: int) -> None:
            calls.append(("metric", run_id, key, value, step))

    def start_run(run_name: str) -> Any:
        calls.append(("start", run_name))
        return SimpleNamespace(info=SimpleNamespace(run_id=f"id-{run_name}"))

    module.set_experiment = lambda name: calls.append(("experiment", name))  # type: ignore[attr-defined]
    module.start_run = start_run  # type: ignore[attr-defined]
    module.end_run = lambda: calls.append(("end",))  # type: ignore[attr-defined]
    module.MlflowClient = Client  # type: ignore[attr-defined]
    return module


def test_each_round_becomes_a_step_of_one_mlflow_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(calls))
    hook = load_example().MlflowRounds(experiment="demo")
    history = History()
    for r in (1, 2):
        history.add_loss_distributed(r, 1.0 / r)
        history.add_metrics_distributed(r, {"accuracy": 0.5, "note": "text"})
        history.add_round_time(r, 0.5)

    with scoped_round_hook(hook):
        report_round(history, 1, run_id=7)
        report_round(history, 2, run_id=7)

    assert calls[:3] == [("experiment", "demo"), ("start", "stamen-run-7"), ("end",)]
    metrics = [c[2:] for c in calls if c[0] == "metric"]
    assert ("loss/distributed", 0.5, 2) in metrics
    assert ("evaluate/accuracy", 0.5, 1) in metrics
    assert ("round/seconds", 0.5, 2) in metrics
    assert not any(name == "evaluate/note" for name, _, _ in metrics)
    assert {c[1] for c in calls if c[0] == "metric"} == {"id-stamen-run-7"}
    assert sum(c[0] == "start" for c in calls) == 1


def test_with_mlflow_installed_the_metrics_land_in_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    hook = load_example().MlflowRounds(experiment="demo")

    hook(RoundReport(3, 1, 0.25, {"loss/distributed": 0.75}))

    run_id = hook._runs[3]
    history = mlflow.MlflowClient().get_metric_history(run_id, "loss/distributed")
    assert [(m.step, m.value) for m in history] == [(1, 0.75)]
