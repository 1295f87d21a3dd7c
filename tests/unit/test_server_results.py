"""The results writer: History.to_dict, metrics.csv, final_arrays.npz, metrics.png, and
the round hook that experiment trackers use."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from stamen.common.legacy import ndarrays_to_parameters
from stamen.common.records import ArrayRecord
from stamen.server.history import History
from stamen.server.results import metrics_table, save_final_arrays, write_results
from stamen.server.tracking import (
    RoundReport,
    add_round_hook,
    recording_history,
    report_result_round,
    report_round,
    round_metrics,
    scoped_round_hook,
)


def history() -> History:
    h = History()
    h.add_loss_centralized(0, 2.0)
    for r in (1, 2, 3):
        h.add_loss_distributed(r, 1.0 / r)
        h.add_loss_centralized(r, 2.0 / r)
        h.add_metrics_distributed(r, {"accuracy": 0.5 + r / 10})
        h.add_metrics_distributed_fit(r, {"train_loss": 3.0 / r, "tag": b"\x01"})
        h.add_metrics_centralized(r, {"accuracy": 0.4 + r / 10})
        h.add_failures(r, r - 1)
        h.add_round_time(r, 0.25 * r)
    return h


def test_to_dict_is_json_and_from_dict_gives_the_same_history() -> None:
    data = json.loads(json.dumps(history().to_dict()))

    assert data["losses_distributed"] == [[1, 1.0], [2, 0.5], [3, 1.0 / 3]]
    assert data["metrics_distributed_fit"]["tag"][0] == [1, {"bytes": "01"}]
    again = History.from_dict(data)
    assert repr(again) == repr(history())
    assert again.round_times == history().round_times
    assert again.failures == [(1, 0), (2, 1), (3, 2)]


def test_from_dict_refuses_what_is_not_a_history() -> None:
    with pytest.raises(ValueError, match="not a History's dict"):
        History.from_dict({"losses_distributed": [[1, "x"]]})


def test_csv_has_a_row_per_round_and_a_column_per_series(tmp_path: Path) -> None:
    write_results(history(), tmp_path, plot=False)

    with (tmp_path / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["round"] for row in rows] == ["0", "1", "2", "3"]
    assert rows[0]["loss_centralized"] == "2.0"
    assert rows[0]["loss_distributed"] == ""
    assert float(rows[2]["evaluate_accuracy"]) == pytest.approx(0.7)
    assert float(rows[2]["centralized_accuracy"]) == pytest.approx(0.6)
    assert float(rows[3]["fit_train_loss"]) == pytest.approx(1.0)
    assert rows[1]["fit_tag"] == "01"
    assert float(rows[3]["seconds"]) == pytest.approx(0.75)
    assert [row["failures"] for row in rows] == ["", "0", "1", "2"]
    header, _ = metrics_table(History())
    assert header == ["round"]


@pytest.mark.parametrize(
    "arrays",
    [
        [np.arange(3.0), np.ones((2, 2), dtype=np.float32)],
        ndarrays_to_parameters([np.arange(3.0), np.ones((2, 2), dtype=np.float32)]),
        ArrayRecord([np.arange(3.0), np.ones((2, 2), dtype=np.float32)]),
    ],
    ids=["list", "Parameters", "ArrayRecord"],
)
def test_final_arrays_keep_order_dtype_and_shape(tmp_path: Path, arrays: object) -> None:
    written = write_results(History(), tmp_path, arrays, plot=False)  # type: ignore[arg-type]

    assert tmp_path / "final_arrays.npz" in written
    with np.load(tmp_path / "final_arrays.npz") as saved:
        assert saved.files == ["0", "1"]
        np.testing.assert_array_equal(saved["0"], np.arange(3.0))
        assert saved["1"].dtype == np.float32
        assert saved["1"].shape == (2, 2)


def test_history_final_arrays_are_written_and_a_state_dict_when_asked(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    h = history()
    h.final_arrays = ArrayRecord({"fc.weight": np.eye(2, dtype=np.float32)})

    write_results(h, tmp_path, torch_state_dict=True, plot=False)

    state = torch.load(tmp_path / "final_state_dict.pt")
    assert list(state) == ["fc.weight"]
    assert torch.equal(state["fc.weight"], torch.eye(2))
    assert not list(tmp_path.glob("*.part"))


def test_no_arrays_no_npz(tmp_path: Path) -> None:
    written = write_results(history(), tmp_path, plot=False)

    assert [p.name for p in written] == ["history.json", "metrics.csv"]


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")

    written = write_results(history(), tmp_path)

    png = tmp_path / "metrics.png"
    assert png in written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_plot_is_skipped_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    caplog.set_level(logging.INFO, "stamen.server.plot")

    written = write_results(history(), tmp_path)

    assert not (tmp_path / "metrics.png").exists()
    assert len(written) == 2
    assert [r.message for r in caplog.records] == [
        "metrics.png skipped: matplotlib is not installed (pip install 'stamen[plot]')"
    ]


def test_round_metrics_names_each_series_once() -> None:
    assert round_metrics(history(), 2) == {
        "loss/distributed": 0.5,
        "loss/centralized": 1.0,
        "fit/train_loss": 1.5,
        "fit/tag": b"\x01",
        "evaluate/accuracy": pytest.approx(0.7),
        "centralized/accuracy": pytest.approx(0.6),
    }


def test_hooks_hear_rounds_and_a_failing_hook_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[RoundReport] = []
    scoped: list[int] = []

    def broken(report: RoundReport) -> None:
        raise RuntimeError("tracker down")

    remove = add_round_hook(heard.append)
    remove_broken = add_round_hook(broken)
    try:
        with scoped_round_hook(lambda report: scoped.append(report.server_round)):
            report_round(history(), 2, run_id=9)
        report_round(history(), 3, run_id=9)
    finally:
        remove()
        remove_broken()
    report_round(history(), 1)

    assert [(r.run_id, r.server_round, r.seconds) for r in heard] == [(9, 2, 0.5), (9, 3, 0.75)]
    assert heard[0].metrics["loss/distributed"] == 0.5
    assert scoped == [2]
    assert sum("tracker down" in r.exc_text for r in caplog.records if r.exc_text) == 2


def test_a_message_api_result_fills_the_recorded_history_round_by_round() -> None:
    from stamen.common.records import MetricRecord
    from stamen.serverapp.strategy.result import Result

    result = Result(arrays=ArrayRecord({"w": np.ones(2)}))
    result.evaluate_metrics_serverapp[0] = MetricRecord({"acc": 0.1})
    heard: list[RoundReport] = []
    with recording_history() as recording, scoped_round_hook(heard.append):
        for r in (1, 2):
            result.train_metrics_clientapp[r] = MetricRecord({"loss": 1.0 / r, "hist": [1, 2]})
            result.evaluate_metrics_clientapp[r] = MetricRecord({"acc": 0.5 * r})
            report_result_round(result, r, 0.25, run_id=4, failures=r - 1)

    recorded = recording.history
    assert recorded.failures == [(1, 0), (2, 1)]
    assert recorded.metrics_centralized == {"acc": [(0, 0.1)]}
    assert recorded.metrics_distributed_fit == {"loss": [(1, 1.0), (2, 0.5)]}
    assert recorded.metrics_distributed == {"acc": [(1, 0.5), (2, 1.0)]}
    assert recorded.round_times == [(1, 0.25), (2, 0.25)]
    assert recorded.final_arrays is result.arrays
    assert [(h.run_id, h.server_round, dict(h.metrics)) for h in heard] == [
        (4, 1, {"fit/loss": 1.0, "evaluate/acc": 0.5}),
        (4, 2, {"fit/loss": 0.5, "evaluate/acc": 1.0}),
    ]


def test_save_final_arrays_writes_the_npz_the_results_folder_gets(tmp_path: Path) -> None:
    h = history()
    h.final_arrays = ArrayRecord([np.arange(3.0), np.ones((2, 2), dtype=np.float32)])
    write_results(h, tmp_path / "results", plot=False)

    path = save_final_arrays(h, tmp_path / "model.npz")

    assert path == tmp_path / "model.npz"
    with np.load(path) as saved, np.load(tmp_path / "results" / "final_arrays.npz") as same:
        assert sorted(saved) == sorted(same) == ["0", "1"]
        for name in saved:
            np.testing.assert_array_equal(saved[name], same[name])


def test_save_final_arrays_without_arrays_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the run left no final arrays"):
        save_final_arrays(history(), tmp_path / "model.npz")
    assert list(tmp_path.iterdir()) == []
