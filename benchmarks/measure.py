"""Run a command (or a group of processes) and measure wall time and peak memory.

Peak memory is the largest sum over the whole process tree, sampled every 50 ms with
psutil: Ray's and the worker pools' processes count, as they cost the machine. Two sums:
RSS, which counts a page shared by several processes (a forked worker's torch) once in
each, and PSS, which splits such a page among them, so that the sum is what the tree costs.
"""

from __future__ import annotations

import compileall
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
    peak_mib: float  # summed RSS
    first_training: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    peaks_by_name: dict[str, float] = field(default_factory=dict)
    peak_pss_mib: float = float("nan")  # summed PSS


class TreeMemory:
    """Samples the summed RSS and PSS of processes and their descendants in a thread
    (`peak`, `peak_pss`: bytes; `peak_by_root`: RSS).

    RSS is cheap to read; PSS makes the kernel walk each process's page tables (5-10 ms
    for a torch process), which on 2 cores would slow the run it measures. So PSS is read
    at most a quarter of the time: after a reading that took t, not again for 3 t. (Its
    peak is the highest reading, so a short peak may fall between two: a lower bound.)
    """

    PSS_SHARE = 0.25
    """The largest share of one core that reading PSS may take."""

    def __init__(self, roots: Sequence[int], interval: float = 0.05) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
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

    def _tree(self, pid: int) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _run(self) -> None:
        pss_due = 0.0
        while not self._stop.wait(self.interval):
            trees = {pid: self._tree(pid) for pid in list(self.roots)}
            per_root = {pid: _summed(procs, "rss") for pid, procs in trees.items()}
            for pid, rss in per_root.items():
                self.peak_by_root[pid] = max(self.peak_by_root.get(pid, 0), rss)
            self.peak = max(self.peak, sum(per_root.values()))
            began = time.monotonic()
            if began >= pss_due:
                pss = sum(_summed(procs, "pss") for procs in trees.values())
                self.peak_pss = max(self.peak_pss, pss)
                took = time.monotonic() - began
                pss_due = began + took / self.PSS_SHARE


def _summed(procs: Sequence[psutil.Process], kind: str) -> int:
    """RSS or PSS of `procs` in bytes (a process that has ended counts 0)."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info() if kind == "pss" else proc.memory_info()
            total += getattr(info, kind)
    return total


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
    sample = Sample(wall, memory.peak / 2**20, first_mark(mark_dir, started), extra)
    sample.peak_pss_mib = memory.peak_pss / 2**20
    return sample


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


def compile_sources(root: Path) -> None:
    """Write the bytecode of a source tree's Python files (its shared/ code, examples and
    benchmark apps), as `pip install` does for an installed package (Flower's too). Else,
    where PYTHONDONTWRITEBYTECODE is set, every run compiles Stamen's modules again: a
    cost that no installed copy pays (about 0.3 s of a simulation's start-up here)."""
    for folder in ("shared", "examples", "benchmarks"):
        compileall.compile_dir(root / folder, quiet=1)


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
