"""Aggregation benchmark: FedAvg, FedAdam, robust strategies, QFedAvg and DP wrappers,
Stamen vs Flower 1.42.

Each (strategy, framework) runs in its own subprocess under that framework's venv, on the
same inputs (client i's float32 model is `default_rng(i).standard_normal(params)`), with
an address-space limit and a timeout, so one run's memory never meets another's. A run
reports the time of `aggregate_train` alone and the memory it added on top of the
replies: peak RSS (sampled every 2 ms) minus the RSS just before the call.

    .venv/bin/python benchmarks/aggregation_robust.py --clients 100 --params 2000000 \\
        --out benchmarks/AGGREGATION_ROBUST.md
    .venv/bin/python benchmarks/aggregation_robust.py --clients 20 --params 100000000 \\
        --only FedAvg,FedAdam --frameworks stamen --limit-gib 14
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = {
    "stamen": ROOT / ".venv/bin/python",
    "flower": ROOT / "benchmarks/.venv-flower/bin/python",
}
STRATEGIES = [
    "FedAvg",
    "FedAdam",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "Bulyan",
    "QFedAvg",
    "DPServerSideFixed",
    "DPServerSideAdaptive",
]
MALICIOUS = 10


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every 2 ms while in the `with` block."""

    def __enter__(self) -> PeakRss:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def strategy_for(module: Any, name: str) -> Any:
    s = module
    if name == "FedAvg":
        return s.FedAvg()
    if name == "FedAdam":
        return s.FedAdam()
    if name == "FedMedian":
        return s.FedMedian()
    if name == "FedTrimmedAvg":
        return s.FedTrimmedAvg(beta=0.2)
    if name == "Krum":
        return s.Krum(num_malicious_nodes=MALICIOUS)
    if name == "MultiKrum":
        return s.MultiKrum(num_malicious_nodes=MALICIOUS, num_nodes_to_select=50)
    if name == "Bulyan":
        return s.Bulyan(num_malicious_nodes=MALICIOUS)
    if name == "QFedAvg":
        return s.QFedAvg(client_learning_rate=0.1)
    if name == "DPServerSideFixed":
        return s.DifferentialPrivacyServerSideFixedClipping(s.FedAvg(), 1.0, 10.0, 1)
    if name == "DPServerSideAdaptive":
        return s.DifferentialPrivacyServerSideAdaptiveClipping(s.FedAvg(), 0.0, 1)
    raise ValueError(f"unknown strategy {name}")


def worker(framework: str, name: str, clients: int, params: int) -> dict[str, Any]:
    """Build the replies, then time `aggregate_train` and watch the memory it adds."""
    import numpy as np

    logging.disable(logging.CRITICAL)
    if framework == "flower":
        from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
        from flwr.serverapp import strategy as strategies
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    else:
        from stamen.common.message import Message
        from stamen.common.records import Array, ArrayRecord, MetricRecord, RecordDict
        from stamen.serverapp import strategy as strategies
    replies = []
    for node in range(1, clients + 1):
        model = np.random.default_rng(node).standard_normal(params, dtype=np.float32)
        sent = Message(RecordDict(), dst_node_id=node, message_type="train")
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": Array(model)}),
                "metrics": MetricRecord({"num-examples": node, "train_loss": 1.0 / node}),
            }
        )
        replies.append(Message(content, reply_to=sent))
        del model
    strategy = strategy_for(strategies, name)
    current = ArrayRecord({"w": Array(np.zeros(params, np.float32))})
    for holder in (strategy, getattr(strategy, "strategy", None)):
        if holder is not None and hasattr(holder, "current_arrays"):
            # FedOpt (both frameworks) keeps the arrays as numpy, the DP wrappers as a record.
            opt = hasattr(holder, "eta")
            holder.current_arrays = {k: a.numpy() for k, a in current.items()} if opt else current
    before = rss()
    with PeakRss() as peak:
        start = time.perf_counter()
        arrays, _ = strategy.aggregate_train(1, replies)
        seconds = time.perf_counter() - start
    assert arrays is not None
    return {"seconds": seconds, "extra_bytes": peak.peak - before, "replies_bytes": before}


def run_one(
    framework: str, name: str, clients: int, params: int, limit_gib: float, timeout: float
) -> dict[str, Any]:
    def limit() -> None:
        cap = int(limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    command = [str(PYTHONS[framework]), __file__, "--worker", framework, name]
    command += ["--clients", str(clients), "--params", str(params)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, preexec_fn=limit, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:80]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def versions() -> str:
    found = []
    for framework, python in PYTHONS.items():
        package = "flwr" if framework == "flower" else "stamen"
        code = (
            "import importlib.metadata as m, numpy; "
            f"print(m.version('{package}'), numpy.__version__)"
        )
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout
        found.append(f"{package} {out.split()[0]} (numpy {out.split()[1]})" if out else package)
    return ", ".join(found)


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    model = args.params * 4
    lines = [
        "# Aggregation benchmark: FedAvg, FedAdam, robust strategies, QFedAvg, DP wrappers",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"shared with other work), Python {platform.python_version()}, {versions()}.",
        "",
        f"Inputs: {args.clients} replies x {args.params:,} float32 parameters "
        f"(model {model / 2**20:.0f} MiB, replies {args.clients * model / 2**30:.2f} GiB), "
        f"Message API `aggregate_train`, f = {MALICIOUS} malicious for Krum/MultiKrum "
        "(50 selected)/Bulyan, DP wrappers around FedAvg. One subprocess per cell, "
        f"{args.limit_gib:.0f} GiB address-space limit, {args.timeout:.0f} s timeout, "
        "1 BLAS thread. `extra` = peak RSS during the call minus RSS before it, in units of "
        "the model's size. Command: `.venv/bin/python benchmarks/aggregation_robust.py "
        f"--clients {args.clients} --params {args.params}`.",
        "",
        "| strategy | Stamen s | Flower s | speed-up | Stamen extra | Flower extra |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, theirs = row["stamen"], row["flower"]

        def cell(result: dict[str, Any], key: str) -> str:
            if "error" in result:
                return result["error"]
            if key == "seconds":
                return f"{result['seconds']:.2f}"
            return f"{result['extra_bytes'] / model:.2f}x"

        speedup = (
            f"{theirs['seconds'] / ours['seconds']:.1f}x"
            if "seconds" in ours and "seconds" in theirs
            else "-"
        )
        lines.append(
            f"| {row['strategy']} | {cell(ours, 'seconds')} | {cell(theirs, 'seconds')} | "
            f"{speedup} | {cell(ours, 'extra')} | {cell(theirs, 'extra')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "STRATEGY"))
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--params", type=int, default=2_000_000)
    parser.add_argument("--only", default=",".join(STRATEGIES))
    parser.add_argument("--frameworks", default="stamen,flower")
    parser.add_argument("--limit-gib", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        framework, name = args.worker
        print(json.dumps(worker(framework, name, args.clients, args.params)))
        return
    rows = []
    for name in args.only.split(","):
        row: dict[str, Any] = {"strategy": name}
        for framework in ("stamen", "flower"):
            if framework not in args.frameworks.split(","):
                row[framework] = {"error": "not run"}
                continue
            row[framework] = run_one(
                framework, name, args.clients, args.params, args.limit_gib, args.timeout
            )
            print(name, framework, row[framework], file=sys.stderr, flush=True)
        rows.append(row)
    text = markdown(rows, args)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
