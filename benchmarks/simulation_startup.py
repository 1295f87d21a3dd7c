"""The seed app's simulation (10 nodes, 1 round), wall time of the whole command, for two
source trees side by side: runs alternate so that the shared machine's load hits both.

    python -m benchmarks.simulation_startup BEFORE_TREE AFTER_TREE [--runs 5]

A tree is a checkout's root (its shared/ goes first on PYTHONPATH, so the installed
dependencies serve both; its bytecode is written first, as an install would); the
command is `python -m stamen.simulation.cli`, whose `__main__` is what the
`stamen-simulation` script runs.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.measure import compile_sources

APP = Path(__file__).resolve().parent.parent / "examples" / "quickstart-pytorch"
ARGS = [
    "--server-app", "server:app", "--client-app", "client:app", "--num-supernodes", "10",
    "--run-config", "num-server-rounds=1",
]  # fmt: skip
FINISHED = re.compile(r"simulation finished in ([0-9.]+)s")


def once(tree: Path, output_dir: Path) -> tuple[float, float, float]:
    """(wall seconds of the command, seconds the CLI logged for the simulation itself, CPU
    seconds of the command and the children it reaped: its workers)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "shared")}
    command = [sys.executable, "-m", "stamen.simulation.cli", *ARGS, f"--output-dir={output_dir}"]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=APP, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - began
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"{tree}: exit code {done.returncode}\n{done.stderr[-2000:]}")
    found = FINISHED.search(done.stderr)
    return wall, float(found.group(1)) if found else float("nan"), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output-dir", type=Path, default=Path("build/simulation_startup"))
    args = parser.parse_args()
    for tree in (args.before, args.after):
        compile_sources(tree)
    figures: dict[str, list[tuple[float, float, float]]] = {"before": [], "after": []}
    for run in range(args.runs):
        for name in ("before", "after"):
            wall, inner, cpu = once(getattr(args, name), args.output_dir / name)
            figures[name].append((wall, inner, cpu))
            print(f"run {run + 1} {name}: wall {wall:.2f}s, sim {inner:.2f}s, CPU {cpu:.2f}s")
    for name, rows in figures.items():
        wall, inner, cpu = (statistics.median(column) for column in zip(*rows, strict=True))
        walls = ", ".join(f"{row[0]:.2f}" for row in rows)
        print(
            f"{name}: median wall {wall:.2f}s, simulation {inner:.2f}s, CPU {cpu:.2f}s; "
            f"walls {walls}"
        )


if __name__ == "__main__":
    main()
