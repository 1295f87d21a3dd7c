"""The SuperLink benchmark still runs: its smallest configuration, end to end.

`benchmarks/superlink_bench.py` is not part of `make test`; this runs it with 20 nodes for
2 s and a 4 MiB object (real SuperLink processes, insecure and TLS) so that it cannot rot.
It asserts that every figure was produced and that no call failed, never a timing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
"""Seconds the benchmark may take on a busy machine (about 6 s when it is idle)."""

pytestmark = pytest.mark.integration


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def test_smallest_configuration_produces_every_figure(tmp_path: Path) -> None:
    out, figures = tmp_path / "SUPERLINK.md", tmp_path / "figures.json"
    command = [
        sys.executable, "-m", "benchmarks.superlink_bench",
        "--nodes", "20", "--seconds", "2", "--channels", "2", "--heartbeat-states", "memory",
        "--object-mib", "4", "--repeats", "1", "--out", str(out), "--json", str(figures),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads(figures.read_text())
    [beats] = result["heartbeats"]
    assert (beats["ok"], beats["failed"], beats["errors"]) == (40, 0, [])
    for key in ("p50_ms", "p99_ms", "max_ms", "superlink_cpu_pct", "loadgen_cpu_pct"):
        assert _number(beats[key]), key
    assert [s["security"] for s in result["streams"]] == ["insecure", "TLS"]
    for stream in result["streams"]:
        for way in (stream["push"], stream["pull"]):
            [rate] = way["mib_s"]
            assert _number(rate)
            assert way["superlink_peak_rss_mib"] > 0
            assert _number(way["superlink_cpu_pct"])
    report = out.read_text()
    assert "## Heartbeats: 20 nodes" in report
    assert "| TLS | pull |" in report
