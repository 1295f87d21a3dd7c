"""`make bench`: every scenario for Stamen and Flower 1.42, alternately, into RESULTS.md.

Runs alternate (Stamen, Flower, Stamen, Flower, ...) so machine drift hits both alike;
each figure is the median of the runs with min and max beside it.
`python -m benchmarks.run --runs 3 --only S1,S2 --out benchmarks/RESULTS.md` measures
some scenarios again and keeps the other rows of RESULTS.md; each row says when it ran.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks import deploy
from benchmarks.measure import Sample, base_env, compile_sources, run_command

ROOT = Path(__file__).resolve().parent.parent
STAMEN_PY = ROOT / ".venv/bin/python"
FLOWER_VENV = ROOT / "benchmarks/.venv-flower"
FLOWER_PY = FLOWER_VENV / "bin/python"
FLOWER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    metric: str  # what the headline figure is
    target: str
    run: Callable[[str, Path], Sample | None]
    max_runs: int | None = None  # S4: Flower may take its full 10 minutes per run
    frameworks: tuple[str, ...] = ("stamen", "flower")  # those that can run it


def simulation(
    nodes: int, rounds: int, fraction: float, **bench: str
) -> Callable[..., Sample | None]:
    def run(framework: str, mark_dir: Path) -> Sample | None:
        python = FLOWER_PY if framework == "flower" else STAMEN_PY
        cmd = [str(python), "-m", "benchmarks.drive", "--framework", framework,
               "--nodes", str(nodes), "--rounds", str(rounds),
               "--fraction", str(fraction)]  # fmt: skip
        env = base_env(framework, mark_dir, **bench)
        return run_command(cmd, env, mark_dir, timeout=FLOWER_TIMEOUT)

    return run


SEED_APP = ROOT / "examples/quickstart-pytorch"


def seed_app(nodes: int, rounds: int) -> Callable[..., Sample | None]:
    """The seed app as a user runs it: `stamen-simulation` with --output-dir (metrics.png
    and all). Stamen only: the app imports `stamen` and reads its run config, which
    Flower's run_simulation cannot pass."""

    def run(framework: str, mark_dir: Path) -> Sample | None:
        cmd = [str(STAMEN_PY), "-m", "stamen.simulation.cli", f"--dir={SEED_APP}",
               "--server-app=server:app", "--client-app=client:app",
               f"--num-supernodes={nodes}", f"--run-config=num-server-rounds={rounds}",
               f"--output-dir={mark_dir / 'results'}"]  # fmt: skip
        return run_command(cmd, base_env(framework, mark_dir), mark_dir, timeout=FLOWER_TIMEOUT)

    return run


SCENARIOS = [
    Scenario("S0", "seed app: simulation, 10 nodes, 1 round", "wall s", "<= 3.0 s",
             seed_app(10, 1), frameworks=("stamen",)),
    Scenario("S1", "simulation, 10 nodes, 3 rounds, all clients", "wall s", "<= 3.5 s",
             simulation(10, 3, 1.0)),
    Scenario("S2", "simulation, 100 nodes, 3 rounds, all clients", "s per round", "<= 0.25 s",
             simulation(100, 3, 1.0)),
    Scenario("S3", "simulation, 1,000 nodes, 1 round, 10%", "wall s", "<= 4 s",
             simulation(1000, 1, 0.1)),
    Scenario("S5", "engine: 1,000 nodes, all clients, echo client", "client tasks/s", ">= 3,000",
             simulation(1000, 1, 1.0, MODE="echo")),
    Scenario("D1", "deployment, TLS, 10 SuperNodes, 3 rounds", "wall s", "<= 12 s",
             deploy.scenario(nodes=10, rounds=3, tls=True)),
    Scenario("D2", "deployment, 4 SuperNodes, model + 400 MiB, 3 rounds", "s per round",
             "<= 10 s; SuperLink <= 2x model", deploy.scenario(nodes=4, rounds=3, EXTRA_MIB="400")),
    Scenario("D2b", "D2, but each node changes the 400 MiB buffer: all bytes new per round",
             "s per round", "<= 15 s",
             deploy.scenario(nodes=4, rounds=3, EXTRA_MIB="400", EXTRA_CHANGES="1")),
    Scenario("D3", "deployment, tiny model, 10 SuperNodes, echo clients: push to last reply",
             "s per exchange", "<= 0.025 s",
             deploy.scenario(nodes=10, rounds=3, HIDDEN="0", MODE="echo")),
    Scenario("S4", "simulation, 10,000 nodes, 1 round, 1%", "wall s", "(finishes)",
             simulation(10000, 1, 0.01), max_runs=1),
    Scenario("S6", "simulation, 100,000 nodes, 2 rounds, 0.1%", "wall s", "finishes, peak <= 1 GB",
             simulation(100000, 2, 0.001), max_runs=1),
]  # fmt: skip


def headline(scenario: Scenario, sample: Sample) -> float:
    rounds = sample.extra.get("round_seconds") or []
    if scenario.metric == "s per round":
        return statistics.median(rounds) if rounds else float("nan")
    if scenario.metric == "s per exchange":
        exchanges = sample.extra.get("exchange_seconds") or []
        return statistics.median(exchanges) if exchanges else float("nan")
    if scenario.metric == "client tasks/s":
        # One round of fit + evaluate on every node: 2 tasks per node.
        return 2 * 1000 / rounds[0] if rounds else float("nan")
    return sample.wall


def firsts_cell(firsts: dict[str, list[float]]) -> str:
    """When training first started; "-" for an app that does not say (the seed app)."""
    if not any(firsts.values()):
        return "-"
    return f"{fmt(firsts.get('stamen'))} / {fmt(firsts.get('flower'))}"


def run_cell(runs: dict[str, list[float]]) -> str:
    """The ServerApp's own run time (deployment scenarios)."""
    if not any(runs.values()):
        return "-"
    return f"{fmt(runs.get('stamen'))} / {fmt(runs.get('flower'))}"


def notes_cell(notes: dict[str, list[str]]) -> str:
    """The SuperLink's own peak RSS per run (deployment scenarios)."""
    if not any(notes.values()):
        return "-"
    return " / ".join(", ".join(notes.get(f, [])) or "-" for f in ("stamen", "flower"))


def ensure_flower_venv() -> None:
    """benchmarks/.venv-flower: torch==2.13.0 first (the CPU wheel), then flwr 1.42.0."""
    if FLOWER_PY.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(FLOWER_VENV)], check=True)
    pip = [str(FLOWER_PY), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "flwr[simulation]==1.42.0", "scikit-learn", "psutil"], check=True)


def import_seconds() -> float:
    """What importing the app's own libraries (torch, scikit-learn) costs, per process."""
    code = "import time; t = time.time(); import torch, sklearn.datasets; print(time.time() - t)"
    out = subprocess.run([str(STAMEN_PY), "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def fmt(values: list[float] | None) -> str:
    if values is None:
        return "not run"
    if not values:
        return "did not finish"
    med = statistics.median(values)
    return f"{med:.4g} ({min(values):.4g}-{max(values):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated scenario keys")
    parser.add_argument("--frameworks", default="stamen,flower")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/RESULTS.md")
    parser.add_argument(
        "--smoke", action="store_true", help="the harness on a 2-node S1, Stamen only, once"
    )
    args = parser.parse_args()
    frameworks = args.frameworks.split(",")
    chosen = [s for s in SCENARIOS if not args.only or s.key in args.only.split(",")]
    if args.smoke:
        frameworks, args.runs = ["stamen"], 1
        chosen = [Scenario("S1", "smoke: 2 nodes, 1 round", "wall s", "-", simulation(2, 1, 1.0))]
    if "flower" in frameworks:
        ensure_flower_venv()
    rows = {} if args.smoke else existing_rows(args.out)
    compile_sources(ROOT)
    imports = import_seconds()
    for scenario in chosen:
        able = [f for f in frameworks if f in scenario.frameworks]
        figures: dict[str, list[float]] = {f: [] for f in able}
        walls: dict[str, list[float]] = {f: [] for f in able}
        firsts: dict[str, list[float]] = {f: [] for f in able}
        peaks: dict[str, list[float]] = {f: [] for f in able}
        psses: dict[str, list[float]] = {f: [] for f in able}
        runs: dict[str, list[float]] = {f: [] for f in able}
        notes: dict[str, list[str]] = {f: [] for f in able}
        for i in range(min(args.runs, scenario.max_runs or args.runs)):
            for framework in able:
                try:
                    with tempfile.TemporaryDirectory() as tmp:
                        sample = scenario.run(framework, Path(tmp))
                except (RuntimeError, OSError) as exc:  # one failed run must not end the bench
                    print(f"{scenario.key} {framework} run {i + 1}: failed: {exc}", flush=True)
                    continue
                if sample is None:
                    print(f"{scenario.key} {framework} run {i + 1}: timed out", flush=True)
                    continue
                figures[framework].append(headline(scenario, sample))
                walls[framework].append(sample.wall)
                peaks[framework].append(sample.peak_mib)
                psses[framework].append(sample.peak_pss_mib)
                if "run_wall" in sample.extra:
                    runs[framework].append(sample.extra["run_wall"])
                if sample.first_training is not None:
                    firsts[framework].append(sample.first_training)
                notes[framework].extend(f"{v:.0f}" for v in sample.peaks_by_name.values())
                times = {k: [round(x, 3) for x in sample.extra.get(f"{k}_seconds", [])]
                         for k in ("round", "exchange")}  # fmt: skip
                print(f"{scenario.key} {framework} run {i + 1}: {headline(scenario, sample):.3f} "
                      f"{scenario.metric}, wall {sample.wall:.2f}s, peak {sample.peak_mib:.0f} "
                      f"MiB RSS, {sample.peak_pss_mib:.0f} MiB PSS, rounds {times['round']}, "
                      f"exchanges {times['exchange']}", flush=True)  # fmt: skip
        s, f = figures.get("stamen"), figures.get("flower")
        ratio = ""
        if s and f:
            better = statistics.median(f) / statistics.median(s)
            if scenario.metric == "client tasks/s":
                better = 1 / better
            ratio = f"{better:.1f}x"
        rows[scenario.key] = (
            f"| {scenario.key} | {scenario.title} | {scenario.metric} | {fmt(s)} | {fmt(f)} | "
            f"{ratio} | {scenario.target} | {fmt(walls.get('stamen'))} | "
            f"{firsts_cell(firsts)} | "
            f"{fmt(peaks.get('stamen'))} / {fmt(peaks.get('flower'))} | "
            f"{fmt(psses.get('stamen'))} / {fmt(psses.get('flower'))} | "
            f"{run_cell(runs)} | "
            f"{notes_cell(notes)} | {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} |"
        )
        write_results(args.out, rows, args.runs, imports)  # after each: a partial run shows


def existing_rows(out: Path) -> dict[str, str]:
    """The rows already in `out`, by scenario key: a run of some scenarios keeps the rest."""
    if not out.exists():
        return {}
    keys = {scenario.key for scenario in SCENARIOS}
    rows = {}
    for line in out.read_text().splitlines():
        cells = line.split("|")
        if len(cells) > 2 and cells[1].strip() in keys:
            rows[cells[1].strip()] = line
    return rows


def write_results(out: Path, rows: dict[str, str], runs: int, imports: float) -> None:
    versions = ["(not installed)", "?"]
    if FLOWER_PY.exists():
        code = "import flwr, torch; print(flwr.__version__, torch.__version__)"
        found = subprocess.run([str(FLOWER_PY), "-c", code], capture_output=True, text=True)
        versions = found.stdout.split() or versions
    import stamen

    mem = psutil.virtual_memory().total / 2**30
    head = f"""# Benchmark results

Written by `make bench` (benchmarks/run.py); last written {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.

- machine: {psutil.cpu_count()} cores ({platform.processor() or platform.machine()}), {mem:.0f} GiB memory, {platform.platform()}
- Python {platform.python_version()}; Stamen {stamen.__version__}; Flower {versions[0]}; torch {versions[1]}
- {runs} runs per framework and scenario (S4: one, as Flower may take its 10-minute limit),
  alternating; each cell: median (min-max)
- app import time (torch + scikit-learn, one process): {imports:.2f} s
- ratio: how many times better Stamen's headline figure is than Flower's
- peak memory, sampled every 50 ms: summed RSS of the process tree (a page shared by
  forked processes counts in each) and summed PSS (shared pages split among the processes
  that map them: what the tree costs); simulation target: <= 450 MiB PSS
- wall: from starting the first process to the end of the run; deployment scenarios also
  give the ServerApp's own run, from its start to its exit (it waits for all SuperNodes,
  so their start-up is inside it)
- measured: when the row's runs ended (UTC); `--only` runs replace just their rows

| key | scenario | headline | Stamen | Flower 1.42 | ratio | target | Stamen wall s | first training s (Stamen / Flower) | peak RSS MiB, process tree (Stamen / Flower) | peak PSS MiB, process tree (Stamen / Flower) | deployment: ServerApp start to exit, s (Stamen / Flower) | SuperLink peak MiB (Stamen / Flower) | measured |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""  # noqa: E501
    order = [s.key for s in SCENARIOS]
    table = [rows[key] for key in sorted(rows, key=lambda k: order.index(k) if k in order else 99)]
    out.write_text(head + "\n".join(table) + "\n" + (out.with_suffix(".notes.md").read_text()
                   if out.with_suffix(".notes.md").exists() else ""))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
