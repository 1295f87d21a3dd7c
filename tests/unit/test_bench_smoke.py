"""The benchmark harness runs end to end on its smallest scenario, so it cannot rot.

Only that the figures were produced is checked: timings never decide a test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


# The harness's own bound (180 s) decides, not pytest's default 120 s: on a loaded machine
# the smallest scenario's simulation alone can take two minutes.
@pytest.mark.timeout(240)
def test_harness_writes_a_results_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    table = out.read_text()
    assert "| key | scenario |" in table
    (row,) = [line for line in table.splitlines() if line.startswith("| S1 ")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    stamen_figure, first_training, rss, pss = cells[3], cells[8], cells[9], cells[10]
    assert stamen_figure[0].isdigit(), row  # a measured wall time, not "did not finish"
    assert first_training[0].isdigit(), row
    assert rss[0].isdigit(), row  # both peaks of the process tree: RSS
    assert pss[0].isdigit(), row  # and PSS
