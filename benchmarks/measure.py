"""Run a command (or a group of processes) and measure wall time and peak memory.

Peak memory is the largest sum of RSS over the whole process tree, sampled every 50 ms
with psutil: Ray's and the worker pools' processes count, as they cost the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Sample:
    wall: float
    peak_mib: float
    first_training: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    peaks_by_name: dict[str, float] = field(default_factory=dict)


class TreeMemory:
    """Samples the summed RSS of processes and their descendants in a thread."""

    def __init__(self, roots: Sequence[int], interval: float = 0.05) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.peak = 0
        self.peak_by_root: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, pid: int) -> None:
        self.roots.append(pid)

    def _rss(self, pid: int) -> int:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            per_root = {pid: self._rss(pid) for pid in list(self.roots)}
            for pid, rss in per_root.items():
                self.peak_by_root[pid] = max(self.peak_by_root.get(pid, 0), rss)
            self.peak = max(self.peak, sum(per_root.values()))


def run_command(
    cmd: Sequence[str], env: dict[str, str], mark_dir: Path, timeout: float
) -> Sample | None:
    """Run cmd; its last stdout line is a JSON object (see drive.py). None on timeout."""
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with TreeMemory([proc.pid]) as memory:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.communicate()
            return None
    wall = time.time() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    extra = json.loads(lines[-1]) if lines else {}
    return Sample(wall, memory.peak / 2**20, first_mark(mark_dir, started), extra)


def first_mark(mark_dir: Path, started: float) -> float | None:
    marks = [float(p.read_text()) for p in mark_dir.glob("fit-*")]
    return min(marks) - started if marks else None


def kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


def base_env(framework: str, mark_dir: Path, **bench: str) -> dict[str, str]:
    env = dict(os.environ)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = str(root)
    # Both frameworks start helper processes by command name: put their venv first.
    venv = root / ("benchmarks/.venv-flower" if framework == "flower" else ".venv")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["BENCH_FRAMEWORK"] = framework
    env["BENCH_MARK_DIR"] = str(mark_dir)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_HOME"] = str(mark_dir / "flwr-home")
    env["RAY_DEDUP_LOGS"] = "0"
    for key, value in bench.items():
        env[f"BENCH_{key}"] = value
    return env
