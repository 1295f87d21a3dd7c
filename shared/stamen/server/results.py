"""A run's results as files a person (or a spreadsheet) opens: one writer for every tool.

    write_results(history, "out/")  # history.json, metrics.csv, final_arrays.npz, metrics.png

- `history.json`: `History.to_dict()`;
- `metrics.csv`: one row per round; columns `round`, `loss_distributed`,
  `loss_centralized`, `fit_<name>`, `evaluate_<name>`, `centralized_<name>`, `failures`,
  `seconds` (only those with values);
- `final_arrays.npz`: the final arrays by name (`np.load(...)["0"]`), when known; with
  `torch_state_dict=True` also `final_state_dict.pt` (`torch.load` it into the model);
- `metrics.png`: the loss and each metric per round (`stamen.server.plot`), when
  matplotlib is installed (`pip install 'stamen[plot]'`); else one log line says so.

`stamen-simulation --output-dir` and `stamen pull` both call `write_results`;
`--save-final-arrays PATH` (the runner's and the simulation's) calls `save_final_arrays`,
which writes the same `.npz` to a path of the user's choosing.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from stamen.common.legacy import Parameters, Scalar, read_only_ndarrays
from stamen.common.records import ArrayRecord

from .history import History

__all__ = [
    "ARRAYS_FILE",
    "CSV_FILE",
    "HISTORY_FILE",
    "PLOT_FILE",
    "STATE_DICT_FILE",
    "Arrays",
    "metrics_table",
    "save_final_arrays",
    "write_results",
]

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
CSV_FILE = "metrics.csv"
ARRAYS_FILE = "final_arrays.npz"
STATE_DICT_FILE = "final_state_dict.pt"
PLOT_FILE = "metrics.png"

Arrays = ArrayRecord | Parameters | Sequence[npt.NDArray[Any]] | Mapping[str, npt.NDArray[Any]]
"""What final arrays may come as: named (a record, a mapping) or in order (keys "0", ...)."""


def write_results(
    history: History,
    directory: str | os.PathLike[str],
    arrays: Arrays | None = None,
    *,
    torch_state_dict: bool = False,
    plot: bool = True,
) -> list[Path]:
    """Write the files above into `directory` (created if need be); the paths written.
    `arrays` default to `history.final_arrays`. OSError when the directory cannot be
    written."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / HISTORY_FILE, folder / CSV_FILE]
    _atomic_text(written[0], json.dumps(history.to_dict(), indent=1) + "\n")
    header, rows = metrics_table(history)
    with _atomic(written[1], newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    named = _named_arrays(history.final_arrays if arrays is None else arrays)
    if named is not None:
        written.append(_save_npz(named, folder / ARRAYS_FILE))
        if torch_state_dict:
            written.append(_save_state_dict(named, folder / STATE_DICT_FILE))
    if plot:
        from .plot import plot_history

        path = folder / PLOT_FILE
        if plot_history(history, path):
            written.append(path)
    return written


def save_final_arrays(history: History, path: str | os.PathLike[str]) -> Path:
    """Write the run's final arrays to `path` as an `.npz` (as `final_arrays.npz`);
    ValueError when the History holds none (the loop did not know its model), OSError
    when `path` cannot be written."""
    named = _named_arrays(history.final_arrays)
    if named is None:
        raise ValueError("the run left no final arrays (its loop did not report a model)")
    return _save_npz(named, Path(path))


def metrics_table(history: History) -> tuple[list[str], list[list[Scalar | str]]]:
    """The History as a header and one row per round ("" where a round has no value)."""
    columns: dict[str, dict[int, Scalar]] = {}
    for name, series in (
        ("loss_distributed", history.losses_distributed),
        ("loss_centralized", history.losses_centralized),
    ):
        if series:
            columns[name] = dict(series)
    for prefix, metrics in (
        ("fit", history.metrics_distributed_fit),
        ("evaluate", history.metrics_distributed),
        ("centralized", history.metrics_centralized),
    ):
        for key, values in metrics.items():
            columns[f"{prefix}_{key}"] = dict(values)
    if history.failures:
        columns["failures"] = dict(history.failures)
    if history.round_times:
        columns["seconds"] = dict(history.round_times)
    rounds = sorted({r for values in columns.values() for r in values})
    rows = [[r, *(_cell(values.get(r)) for values in columns.values())] for r in rounds]
    return ["round", *columns], rows


def _cell(value: Scalar | None) -> Scalar | str:
    if value is None:
        return ""
    return value.hex() if isinstance(value, bytes) else value


def _named_arrays(arrays: Arrays | None) -> dict[str, npt.NDArray[Any]] | None:
    if arrays is None:
        return None
    if isinstance(arrays, ArrayRecord):
        return {name: array.numpy() for name, array in arrays.items()}
    if isinstance(arrays, Parameters):
        arrays = read_only_ndarrays(arrays)
    if isinstance(arrays, Mapping):
        return {str(name): np.asarray(array) for name, array in arrays.items()}
    return {str(i): np.asarray(array) for i, array in enumerate(arrays)}


def _save_npz(named: Mapping[str, npt.NDArray[Any]], path: Path) -> Path:
    with _atomic(path, binary=True) as out:
        np.savez(out, **named)  # type: ignore[arg-type]  # names are free-form
    return path


def _save_state_dict(named: Mapping[str, npt.NDArray[Any]], path: Path) -> Path:
    import torch

    state = {name: torch.from_numpy(np.array(array)) for name, array in named.items()}
    with _atomic(path, binary=True) as out:
        torch.save(state, out)
    return path


@contextlib.contextmanager
def _atomic(path: Path, *, binary: bool = False, newline: str | None = None) -> Iterator[IO[Any]]:
    """Write to `<path>.part`, then rename it over `path`: no reader sees half a file."""
    part = path.with_name(path.name + ".part")
    try:
        with (
            part.open("wb") if binary else part.open("w", encoding="utf-8", newline=newline) as out
        ):
            yield out
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _atomic_text(path: Path, text: str) -> None:
    with _atomic(path) as out:
        out.write(text)
