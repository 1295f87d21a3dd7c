"""Each round's metrics in MLflow, from any ServerApp: add two lines to its module.

    from mlflow_tracking import MlflowRounds
    from stamen.server.tracking import add_round_hook

    add_round_hook(MlflowRounds(experiment="quickstart"))

Needs `pip install mlflow` (Stamen does not depend on it). MLflow writes to `./mlruns`
unless MLFLOW_TRACKING_URI says otherwise; `mlflow ui` then shows one MLflow run per
Stamen run, with a step per round: "loss/distributed", "evaluate/accuracy", ... and
"round/seconds". Values that are not numbers (bytes, text) are left out.
"""

from __future__ import annotations

from typing import Any

from stamen.server.tracking import RoundReport

__all__ = ["MlflowRounds"]


class MlflowRounds:
    """A round hook (`stamen.server.tracking`) that logs to MLflow."""

    def __init__(self, experiment: str = "stamen") -> None:
        import mlflow  # imported here: the example's module loads without it

        self._mlflow: Any = mlflow
        self._experiment = experiment
        self._runs: dict[int, str] = {}

    def __call__(self, report: RoundReport) -> None:
        mlflow = self._mlflow
        if report.run_id not in self._runs:
            mlflow.set_experiment(self._experiment)
            run = mlflow.start_run(run_name=f"stamen-run-{report.run_id}")
            self._runs[report.run_id] = run.info.run_id
            mlflow.end_run()  # logged to by id: no global "active run" is left behind
        metrics = {
            name: float(value)
            for name, value in report.metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        if report.seconds is not None:
            metrics["round/seconds"] = report.seconds
        client = mlflow.MlflowClient()
        for name, value in metrics.items():
            client.log_metric(self._runs[report.run_id], name, value, step=report.server_round)
