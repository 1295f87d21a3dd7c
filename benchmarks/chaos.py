"""`make chaos`: a small deployment on loopback, disturbed on purpose, run after run.

A SuperLink (SQLite), three SuperNodes (reaching the Fleet API through `ChaosProxy`) and
the ServerApp runner run a deterministic app (FedAvg, `accept_failures=False`, five
rounds; its centralized evaluation notes the model's sha256 after each round). The first
run is undisturbed. Every other run gets faults at random moments (seeded): SIGKILL of the
SuperLink (restarted on the same database and ports), of a SuperNode (restarted), of a
SuperNode's ClientApp worker, of the runner (then `stamen-serverapp --resume RUN_ID`),
network faults (the proxy drops every connection, or stalls for seconds), a full disk
(the SuperLink's state lives on a small tmpfs, filled up for seconds, then freed; needs
root to mount, skipped otherwise) and a stuck client (one ClientApp's fit never returns:
its node cancels the task when the round times out). A run that
ends failed (a round lost a node, say) must say why; it is then resumed from its last
checkpoint. Each run must end with the undisturbed run's model after every round (the
same History, bit for bit). Writes the table to benchmarks/CHAOS.md.

    python -m benchmarks.chaos [--runs 8] [--seed 1] [--minutes 8] [--faults a,b]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import re
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.chaos_disk import SmallDisk
from benchmarks.chaos_proxy import ChaosProxy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from procs import Proc, Procs, free_port  # noqa: E402

ROUNDS = 5
FAULTS = (
    "superlink-kill",
    "supernode-kill",
    "worker-kill",
    "runner-kill",
    "network-drop",
    "network-stall",
    "full-disk",
    "stuck-client",
)
RUN_TIMEOUT = 180.0
"""Seconds one disturbed run may take, resumes included, before it counts as lost."""

APP = f"""
import hashlib
import json
import os
import time

import numpy as np
from stamen.client import ClientApp, NumPyClient
from stamen.common import ndarrays_to_parameters
from stamen.server import ServerApp, ServerConfig
from stamen.server.strategy import FedAvg


STUCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stuck")


class Step(NumPyClient):
    def __init__(self, partition):
        self.partition = partition

    def fit(self, parameters, config):
        try:
            os.remove(STUCK)  # the chaos suite's "stuck-client": this fit never returns
        except FileNotFoundError:
            pass
        else:
            while True:
                time.sleep(3600)
        time.sleep(0.4)  # faults land inside rounds too
        step = np.float32(0.1) * np.float32(self.partition + 1) / np.float32(3)
        return [p * np.float32(0.9) + step for p in parameters], 7 + self.partition, {{}}

    def evaluate(self, parameters, config):
        return float(sum(float(p.sum()) for p in parameters)), 5, {{}}


client = ClientApp(
    client_fn=lambda context: Step(int(context.node_config["partition-id"])).to_client()
)


def record(server_round, ndarrays, config):
    digest = hashlib.sha256(b"".join(a.tobytes() for a in ndarrays)).hexdigest()
    with open(os.environ["CHAOS_OUT"], "a") as out:
        out.write(json.dumps({{"round": server_round, "digest": digest}}) + "\\n")
    return None


server = ServerApp(
    config=ServerConfig(num_rounds={ROUNDS}),
    strategy=FedAvg(
        min_fit_clients=3,
        min_evaluate_clients=3,
        min_available_clients=3,
        accept_failures=False,
        evaluate_fn=record,
        initial_parameters=ndarrays_to_parameters([np.linspace(0, 1, 4096, dtype=np.float32)]),
    ),
)
"""


@dataclass
class Outcome:
    faults: list[str]
    identical: bool = False
    failed_reasons: list[str] = field(default_factory=list)
    recovery: dict[str, float] = field(default_factory=dict)
    note: str = ""


class Deployment:
    """The SuperLink, the proxy and the SuperNodes, restartable one by one."""

    def __init__(self, procs: Procs, work: Path, disk: SmallDisk | None) -> None:
        self.procs = procs
        self.work = work
        self.disk = disk
        self.ports = (free_port(), free_port(), free_port())
        state = (work if disk is None else disk.path) / "state.db"
        self.superlink_argv = [
            "stamen-superlink", "--insecure", "--database", str(state),
            "--fleet-api-address", f"127.0.0.1:{self.ports[0]}",
            "--serverappio-api-address", f"127.0.0.1:{self.ports[1]}",
            "--control-api-address", f"127.0.0.1:{self.ports[2]}",
            "--heartbeat-interval", "2",
        ]  # fmt: skip
        self.superlink = self._start_superlink()
        self.proxy = ChaosProxy(self.ports[0])
        self.nodes = [self._start_node(p) for p in range(3)]
        for node in self.nodes:
            node.wait_for(r"registered as node \d+")

    def _start_superlink(self) -> Proc:
        proc = self.procs.start("superlink", self.superlink_argv)
        proc.wait_for(r"SuperLink ready")
        return proc

    def _node_argv(self, partition: int) -> list[str]:
        return [
            "stamen-supernode", "chaos_app:client", "--dir", str(self.work), "--insecure",
            "--server", f"127.0.0.1:{self.proxy.port}",
            "--node-config", f"partition-id={partition} num-partitions=3",
        ]  # fmt: skip

    def _start_node(self, partition: int) -> Proc:
        return self.procs.start(f"supernode-{partition}", self._node_argv(partition))

    def runner(self, out: Path, *extra: str) -> Proc:
        return self.procs.start(
            "runner",
            [
                "stamen-serverapp", "chaos_app:server", "--dir", str(self.work), "--insecure",
                "--server", f"127.0.0.1:{self.ports[1]}", "--round-timeout", "30", *extra,
            ],
            env={"CHAOS_OUT": str(out)},
        )  # fmt: skip

    def inject(self, fault: str, rng: random.Random) -> None:
        if fault == "superlink-kill":
            self.superlink.kill()
            self.superlink = self._start_superlink()
        elif fault == "supernode-kill":
            index = rng.randrange(len(self.nodes))
            self.nodes[index].kill()
            self.nodes[index] = self._start_node(index)
            self.nodes[index].wait_for(r"registered as node \d+")
        elif fault == "worker-kill":
            node = self.nodes[rng.randrange(len(self.nodes))]
            workers = [
                child
                for child in psutil.Process(node.pid).children(recursive=True)
                if "resource_tracker" not in " ".join(child.cmdline())
            ]
            if workers:
                rng.choice(workers).kill()
        elif fault == "network-drop":
            self.proxy.drop()
        elif fault == "network-stall":
            self.proxy.stall(rng.uniform(1.0, 4.0))
        elif fault == "full-disk" and self.disk is not None:
            full = r"SuperLink storage is full"
            seen = len(self.superlink.matches(full))
            self.disk.fill()
            deadline = time.monotonic() + 10  # until a write fails (some fit in the WAL)
            while len(self.superlink.matches(full)) == seen and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(rng.uniform(1.0, 4.0))
            self.disk.free()
        elif fault == "stuck-client":
            flag = self.work / "stuck"
            flag.touch()  # the next fit takes it and hangs
            deadline = time.monotonic() + 60
            while flag.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            raise ValueError(fault)


def digests(out: Path) -> dict[int, str]:
    """Round -> the model's digest after it, as the runs noted them (a round noted twice
    must agree with itself: else the run is wrong)."""
    seen: dict[int, str] = {}
    if not out.exists():
        return seen
    for line in out.read_text().splitlines():
        entry = json.loads(line)
        if seen.setdefault(entry["round"], entry["digest"]) != entry["digest"]:
            seen[entry["round"]] = "DISAGREES"
    return seen


def run_id_of(runner: Proc) -> int:
    (match,) = runner.wait_for(r"run (\d+): starting ServerApp", timeout=60)
    return int(match.group(1))


def error_line(runner: Proc) -> str:
    found = runner.matches(r"stamen-serverapp: error: (.*)")
    return found[-1].group(1) if found else f"exit code {runner.popen.returncode}"


def lines(out: Path) -> int:
    return len(out.read_text().splitlines()) if out.exists() else 0


def disturbed_run(
    deployment: Deployment, work: Path, index: int, faults: list[str], rng: random.Random
) -> Outcome:
    outcome = Outcome(faults)
    out = work / f"run-{index}.jsonl"
    runner = deployment.runner(out)
    run_id = run_id_of(runner)
    deadline = time.monotonic() + RUN_TIMEOUT
    pending = sorted((rng.uniform(0.5, ROUNDS - 1.5), fault) for fault in faults)
    resumes = 0
    while True:
        if pending and lines(out) >= pending[0][0]:
            time.sleep(rng.uniform(0.0, 0.6))
            _, fault = pending.pop(0)
            before, started = lines(out), time.monotonic()
            if fault == "runner-kill":
                runner.kill()
                runner = resume(deployment, out, run_id, deadline)
                run_id = run_id_of(runner)
            else:
                deployment.inject(fault, rng)
                if fault == "stuck-client":  # recovery counts from the moment a fit hangs
                    before, started = lines(out), time.monotonic()
            while lines(out) <= before and runner.popen.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            outcome.recovery[fault] = time.monotonic() - started
        code = runner.popen.poll()
        if code == 0 and not pending:
            break
        if code is not None and code != 0:
            outcome.failed_reasons.append(error_line(runner))
            resumes += 1
            if resumes > 4:
                outcome.note = "gave up after 4 resumes"
                break
            runner = resume(deployment, out, run_id, deadline)
            run_id = run_id_of(runner)
        if time.monotonic() > deadline:
            outcome.note = f"not done within {RUN_TIMEOUT:g}s"
            runner.kill()
            break
        time.sleep(0.1)
    outcome.identical = digests(out) == BASELINE
    return outcome


def resume(deployment: Deployment, out: Path, run_id: int, deadline: float) -> Proc:
    """`--resume RUN_ID`, again while another runner's lease on it has not lapsed yet."""
    while True:
        runner = deployment.runner(out, "--resume", str(run_id))
        found = runner.wait_for(r"starting ServerApp|stamen-serverapp: error", timeout=60)
        if "error" not in found[0].group(0) or time.monotonic() > deadline:
            return runner
        if "driven by another ServerApp runner" not in error_line(runner):
            return runner
        runner.wait()
        time.sleep(2.0)


BASELINE: dict[int, str] = {}

EVIDENCE = (
    ("a full disk, named by the SuperLink", r"SuperLink storage is full"),
    ("an outage, as a node or the runner logs its start", r"lost the connection to the"),
    ("its end", r"reconnected to the SuperLink after"),
    ("a stuck task, cancelled by its node", r"cancelled the ClientApp's task"),
)


def log_evidence(log_dir: Path) -> list[str]:
    """For each kind of line in EVIDENCE: how many the processes logged, and the first."""
    logs = [path.read_text(errors="replace").splitlines() for path in sorted(log_dir.glob("*"))]
    found = []
    for what, pattern in EVIDENCE:
        hits = [line for log in logs for line in log if re.search(pattern, line)]
        example = f": `{hits[0].strip()[:220]}`" if hits else ""
        found.append(f"- {what}: {len(hits)} lines{example}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="disturbed runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=10.0, help="stop starting runs after")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "CHAOS.md")
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}"
    )
    args = parser.parse_args()
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        parser.error(f"--faults: unknown {unknown}; choose from {', '.join(FAULTS)}")
    rng = random.Random(args.seed)
    stop_at = time.monotonic() + args.minutes * 60
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stamen-chaos-") as tmp:
        work = Path(tmp)
        (work / "chaos_app.py").write_text(textwrap.dedent(APP))
        disk = None
        if "full-disk" in faults:
            if SmallDisk.available(work / "probe"):
                disk = SmallDisk(work / "disk")
            else:
                print("full-disk skipped: mounting a tmpfs needs root", flush=True)
                faults = tuple(f for f in faults if f != "full-disk")
        with Procs(work / "logs") as procs, contextlib.ExitStack() as cleanup:
            if disk is not None:
                cleanup.callback(disk.close)
            deployment = Deployment(procs, work, disk)
            cleanup.callback(deployment.proxy.close)
            try:
                out = work / "baseline.jsonl"
                runner = deployment.runner(out)
                if runner.wait(RUN_TIMEOUT) != 0:
                    raise SystemExit(f"the undisturbed run failed: {error_line(runner)}")
                BASELINE.update(digests(out))
                if sorted(BASELINE) != list(range(ROUNDS + 1)):
                    raise SystemExit(f"the undisturbed run noted rounds {sorted(BASELINE)}")
                outcomes: list[Outcome] = []
                for index in range(args.runs):
                    if time.monotonic() > stop_at:
                        break
                    chosen = rng.sample(faults, min(len(faults), rng.choice((1, 2))))
                    if index < len(faults):  # every fault at least once
                        first = faults[index]
                        chosen = [first, *[f for f in chosen if f != first]][:2]
                    outcome = disturbed_run(deployment, work, index, chosen, rng)
                    print(f"run {index}: {outcome}", flush=True)
                    outcomes.append(outcome)
            finally:
                procs.close()  # before the disk goes
        evidence = log_evidence(work / "logs")
    write_report(args.out, outcomes, time.monotonic() - began, args.seed, evidence)


def write_report(
    path: Path, outcomes: list[Outcome], seconds: float, seed: int, evidence: list[str]
) -> None:
    per: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        for fault in outcome.faults:
            per[fault].append(outcome)
    rows = [
        "| fault | runs | runs identical | runs failed with reason, then resumed | "
        "max recovery (s) |",
        "|---|---|---|---|---|",
    ]
    for fault in FAULTS:
        runs = per.get(fault, [])
        recovery = [o.recovery[fault] for o in runs if fault in o.recovery]
        rows.append(
            f"| {fault} | {len(runs)} | {sum(o.identical for o in runs)} | "
            f"{sum(bool(o.failed_reasons) for o in runs)} | "
            f"{max(recovery):.1f} |"
            if recovery
            else f"| {fault} | {len(runs)} | {sum(o.identical for o in runs)} | "
            f"{sum(bool(o.failed_reasons) for o in runs)} | - |"
        )
    injected = sum(len(o.faults) for o in outcomes)
    lost = [o for o in outcomes if not o.identical]
    reasons = sorted({r for o in outcomes for r in o.failed_reasons})
    command = " ".join(["python -m benchmarks.chaos", *sys.argv[1:]])
    text = [
        "# Chaos: no single fault stops a federation",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, seed {seed}, "
        f"{seconds / 60:.1f} min; {platform.node()}, {psutil.cpu_count()} CPUs, "
        f"Python {platform.python_version()}): a SuperLink (SQLite), three SuperNodes behind "
        f"a TCP proxy and the runner on 127.0.0.1; FedAvg over {ROUNDS} rounds with "
        "accept_failures=False and a 30 s round timeout. Recovery: from the fault to the "
        "next completed round (a killed runner waits for its lease, 30 s, to lapse; a stuck "
        "client holds its round until the round timeout). full-disk: the SuperLink's state "
        "on a 64 MiB tmpfs, filled until a write fails (at most 10 s) and 1-4 s more, then "
        "freed. stuck-client: one ClientApp's fit never returns. A run with two faults "
        "counts in both rows. Not injected here, tested in `make test` instead: a read-only "
        "disk, a corrupt database "
        "(`tests/unit/test_storage_faults.py`).",
        "",
        f"**{len(outcomes)} disturbed runs, {injected} faults injected, "
        f"{len(outcomes) - len(lost)} runs identical to the undisturbed run (the model "
        f"after every round, bit for bit), {len(lost)} lost or wrong.**",
        "",
        *rows,
        "",
        "Reasons the failed runs gave (each then resumed with `stamen-serverapp --resume`):",
        "",
        *([f"- {reason}" for reason in reasons] or ["- (none)"]),
        "",
        "What the processes logged (all of them, over the session):",
        "",
        *evidence,
    ]
    if lost:
        text += ["", "Runs lost or wrong:", ""]
        text += [f"- faults {o.faults}: {o.note or 'History differs'}" for o in lost]
    path.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
